"""What the `textclf-*` commands share: where their configs live, how they fail, how they write files."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
from hydra.errors import InstantiationException
from omegaconf import DictConfig

from textclf.model import CheckpointError
from textclf.sources import DataError

CONFIG_PATH = "pkg://textclf.conf"


def command_main(function: Callable[[DictConfig], Any], config_name: str) -> Callable[[], Any]:
    """The Hydra entry point of a `textclf-*` command that runs `function` on config `config_name`."""

    @hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name=config_name)
    def main(cfg: DictConfig) -> Any:
        return run_command(function, cfg)

    return main


def run_command(function: Callable[[DictConfig], Any], cfg: DictConfig) -> Any:
    """Run a command's function; bad input, a bad setting or a bad checkpoint ends it with one line and
    exit status 2 (Hydra wraps errors raised while building objects from the config: unwrap those)."""
    try:
        return function(cfg)
    except (DataError, CheckpointError, InstantiationException) as error:
        cause = error.__cause__ if isinstance(error, InstantiationException) else error
        if not isinstance(cause, ValueError):
            raise
        print(f"textclf: error: {cause}", file=sys.stderr)
        sys.exit(2)


def write_atomically(path: Path, write: Any) -> None:
    """`write(temporary_path)`, then rename: readers see the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_json_atomically(path: Path, payload: dict[str, Any]) -> None:
    write_atomically(path, lambda target: target.write_text(json.dumps(payload, indent=2) + "\n"))
