"""Writing files so that a crash, a full disk or a missing permission never leaves half of one."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from textclf.errors import OutputError


def os_error_reason(error: OSError, *own_paths: Path) -> str:
    """What the system said, plus the file it was about when that is not one of `own_paths` (e.g. a
    parent directory that is a file)."""
    reason = error.strerror or str(error) or type(error).__name__
    if error.filename and Path(error.filename) not in own_paths:
        reason += f": {error.filename}"
    return reason


def write_atomically(path: Path, write: Callable[[Path], Any], what: str = "file") -> None:
    """`write(temporary_path)` beside `path`, flush it to disk, then rename: readers (and a run that
    resumes) see the old file or the whole new one, never a part. A failure (no space, no permission)
    becomes an OutputError naming `path`, with the old file untouched."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(temporary)
        with open(temporary, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except OSError as error:
        kept = " (the previous one is kept)" if path.exists() else ""
        raise OutputError(f"{path}: cannot write the {what}: {os_error_reason(error, path, temporary)}{kept}") from None
    finally:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)


def write_json_atomically(path: Path, payload: dict[str, Any]) -> None:
    write_atomically(path, lambda target: target.write_text(json.dumps(payload, indent=2) + "\n"))


def remove_partial_files(directory: Path) -> list[Path]:
    """Delete the temporary files a killed writer left in `directory`; return them."""
    leftovers = sorted(Path(directory).glob(".*.tmp-*")) if Path(directory).is_dir() else []
    for leftover in leftovers:
        leftover.unlink(missing_ok=True)
    return leftovers
