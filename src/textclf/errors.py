"""The errors a user can fix: each message names the file, row, column or key, and is shown as one line."""

from __future__ import annotations


class TextclfError(ValueError):
    """Base of textclf's user errors; `textclf-*` commands print the message and exit with status 2."""


class DataError(TextclfError):
    """Bad input data or a bad data setting."""


class CheckpointError(TextclfError):
    """A checkpoint that is missing, damaged, unsafe, or cannot do what was asked of it."""


class OutputError(TextclfError):
    """A file or directory that cannot be written."""


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (at most 200 characters), or its type's name."""
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else type(error).__name__


class SettingError(TextclfError):
    """A setting that cannot work here (checked outside Hydra's instantiation, which reports its own)."""
