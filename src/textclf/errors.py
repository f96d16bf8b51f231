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
