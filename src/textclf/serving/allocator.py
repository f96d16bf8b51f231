"""A long-running server's memory grows less: glibc's malloc keeps one arena for every thread.

glibc gives threads that allocate at the same time arenas of their own, and each arena keeps the memory
freed into it for its own later use. The server's forward passes run in their own thread beside the event
loop's; under batches of ever other sizes and lengths the free space of the arenas does not line up, and
RSS rises in steps. With one arena the freed blocks of one batch serve the next, whichever thread asks (the
forward pass allocates from one thread at a time, so there is no lock to wait for). Measured in
docs/serving.md#measured.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_ARENA_MAX = -8  # mallopt's parameter number, from glibc's malloc.h


def single_arena() -> bool:
    """Limit malloc to one arena; False where the C library is not glibc (musl, macOS, Windows)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    return mallopt(M_ARENA_MAX, 1) == 1
