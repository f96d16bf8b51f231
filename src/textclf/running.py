"""How a `textclf-*` command runs: its Hydra entry point, and a user's mistake ended with one line and exit
status 2 (a multirun job's written to its run dir, so the other jobs go on)."""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from omegaconf import DictConfig

from textclf.atomic import write_atomically
from textclf.config import CONFIG_PATH
from textclf.errors import TextclfError, first_line


def command_main(
    function: Callable[[DictConfig], Any],
    config_name: str,
    returns: Callable[[Any, DictConfig], Any] | None = None,
) -> Callable[[], Any]:
    """The Hydra entry point of a `textclf-*` command that runs `function` on config `config_name`. In a
    multirun (`-m`) a failing job does not stop the others. `returns` picks what the entry point gives Hydra
    from the function's result (a sweeper reads it: the optimized metric)."""

    @hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name=config_name)
    def main(cfg: DictConfig) -> Any:
        # what the imports made lives until the process ends: out of the garbage collector's sight, it is not
        # traversed again by each collection, nor at exit (docs/performance.md: a one-line textclf-predict). Once: the
        # later jobs of a multirun must not freeze what earlier ones left to collect.
        if not gc.get_freeze_count():
            gc.freeze()
        result = run_command(function, cfg, keep_going=HydraConfig.get().mode == RunMode.MULTIRUN)
        return returns(result, cfg) if returns is not None and result is not None else result

    return main


ERROR_FILE = "error.txt"


def unwrap(error: BaseException) -> BaseException:
    """The error itself, or what went wrong inside Hydra's InstantiationException."""
    return error.__cause__ if isinstance(error, InstantiationException) and error.__cause__ else error


def user_error(error: BaseException) -> ValueError | None:
    """textclf's own error to show as is (bad input, a bad setting, a bad checkpoint, a file it cannot
    write), unwrapped from Hydra's InstantiationException; None for anything unexpected."""
    cause = unwrap(error)
    known = isinstance(error, (TextclfError, InstantiationException))
    return cause if known and isinstance(cause, ValueError) else None


def error_line(error: BaseException) -> str:
    """One line saying what went wrong: a user error's message, else the exception type and first line."""
    if (known := user_error(error)) is not None:
        return str(known)
    cause = unwrap(error)
    return f"{type(cause).__name__}: {first_line(cause)}" if str(cause).strip() else type(cause).__name__


def run_command(function: Callable[[DictConfig], Any], cfg: DictConfig, keep_going: bool = False) -> Any:
    """Run a command's function; a user error ends it with one line and exit status 2, anything else
    with its traceback. `keep_going` (a job of a multirun): any error is shown, written to the run dir's
    error.txt for the sweep summary, and None returned, so that the other jobs still run. The line goes to
    standard error as `textclf: error: ...`, like an argument parser's message, not through logging."""
    try:
        return function(cfg)
    except Exception as error:
        if not keep_going and user_error(error) is None:
            raise
        line = error_line(error)
        print(f"textclf: error: {line}", file=sys.stderr)
        if not keep_going:
            sys.exit(2)
        write_atomically(Path(cfg.paths.output_dir) / ERROR_FILE, lambda path: path.write_text(line + "\n"))
        return None
