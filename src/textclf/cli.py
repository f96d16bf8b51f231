"""What the `textclf-*` commands share: where their configs live, how they fail, how they write files."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import hydra
from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf

from textclf.checkpoints import run_dir
from textclf.files import OutputError
from textclf.model import CheckpointError
from textclf.sources import DataError

CONFIG_PATH = "pkg://textclf.conf"
# hydra/default.yaml names the run dir through it: a new one, or the run that `resume=` continues
OmegaConf.register_new_resolver("textclf_run_dir", run_dir, replace=True)


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
    except (DataError, CheckpointError, OutputError, InstantiationException) as error:
        cause = error.__cause__ if isinstance(error, InstantiationException) else error
        if not isinstance(cause, ValueError):
            raise
        print(f"textclf: error: {cause}", file=sys.stderr)
        sys.exit(2)
