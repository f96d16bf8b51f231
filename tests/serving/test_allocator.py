"""The server's allocator setting: memory one thread freed serves another thread's next allocations."""

import platform
import subprocess
import sys

import pytest

# in a fresh process: the main thread writes 50 MiB in 64 KiB blocks and frees them behind a small block
# that stays; then another thread writes 50 MiB the same way. Prints how far RSS rose for the second thread
PROBE = """
import ctypes, sys, threading
from textclf.serving.allocator import single_arena
if sys.argv[1] == "single":
    assert single_arena()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
rss = lambda: int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
size, count = 64 << 10, 800

def written_blocks():
    blocks = [libc.malloc(size) for _ in range(count)]
    for block in blocks:
        ctypes.memset(block, 1, size)
    return blocks

first = written_blocks()
pinned = libc.malloc(100)
for block in first:
    libc.free(block)
before = rss()
thread = threading.Thread(target=written_blocks)
thread.start()
thread.join()
print(rss() - before)
"""


def rss_rise(mode: str) -> float:
    result = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
    return float(result.stdout)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's allocator")
def test_one_arena_lets_a_thread_reuse_what_another_freed() -> None:
    assert rss_rise("default") > 40  # glibc's own setting: the thread's arena grows its own 50 MiB
    assert rss_rise("single") < 10
