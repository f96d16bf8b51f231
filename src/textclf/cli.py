"""What the `textclf-*` commands share: where their configs live and how they fail."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig

from textclf.model import CheckpointError
from textclf.sources import DataError

CONFIG_PATH = "pkg://textclf.conf"


def run_command(function: Callable[[DictConfig], Any], cfg: DictConfig) -> Any:
    """Run a command's function; bad input or a bad checkpoint ends it with one line and exit status 2."""
    try:
        return function(cfg)
    except (DataError, CheckpointError) as error:
        print(f"textclf: error: {error}", file=sys.stderr)
        sys.exit(2)
