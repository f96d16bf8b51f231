"""How a `textclf-*` command runs: its settings checked before anything is imported or written, its Hydra
entry point, and a user's mistake ended with one line and exit status 2 (a multirun job's written to its run
dir, so the other jobs go on)."""

from __future__ import annotations

import gc
import importlib
import re
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
from textclf.config import CONFIG_PATH, check_command_line, with_search_path
from textclf.errors import TextclfError, first_line
from textclf.validation import SettingsError, checked

Function = Callable[[DictConfig], Any]


def command_main(
    function: Function | str,
    config_name: str,
    returns: Callable[[Any, DictConfig], Any] | None = None,
) -> Callable[[], Any]:
    """The entry point of a `textclf-*` command that runs `function` (or "module:function", imported only
    once the settings passed their check) on config `config_name`. In a multirun (`-m`) a failing job does
    not stop the others. `returns` picks what the entry point gives Hydra from the function's result (a
    sweeper reads it: the optimized metric)."""

    @hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name=config_name)
    def hydra_main(cfg: DictConfig) -> Any:
        # what the imports made lives until the process ends: out of the garbage collector's sight, it is not
        # traversed again by each collection, nor at exit (docs/performance.md: a one-line textclf-predict). Once: the
        # later jobs of a multirun must not freeze what earlier ones left to collect.
        keep_going = HydraConfig.get().mode == RunMode.MULTIRUN
        result = run_command(lambda cfg: imported(function)(cfg), cfg, keep_going=keep_going)
        return returns(result, cfg) if returns is not None and result is not None else result

    def main() -> Any:
        check_settings_first(config_name, sys.argv[1:])
        sys.argv[1:] = with_search_path(config_name, sys.argv[1:])
        return hydra_main()

    return main


def imported(function: Function | str) -> Function:
    """The function itself, or the one a "module:function" string names (imported, then frozen: see main)."""
    if not isinstance(function, str):
        return function
    module, name = function.split(":")
    found = getattr(importlib.import_module(module), name)
    if not gc.get_freeze_count():
        gc.freeze()
    return found


def check_settings_first(config_name: str, arguments: list[str]) -> None:
    """A run's settings composed and checked before Hydra makes its run dir or anything heavy is imported:
    each mistake one line, exit status 2. Hydra's own flags (--help, --cfg, -m, ...) are left to Hydra, and a
    multirun's jobs are checked one by one (run_command)."""
    if any(argument.startswith("-") for argument in arguments):
        return
    try:
        check_command_line(config_name, arguments)
    except SettingsError as error:
        for line in error.lines:
            print(f"textclf: error: {line}", file=sys.stderr)
        sys.exit(2)


ERROR_FILE = "error.txt"


def unwrap(error: BaseException) -> BaseException:
    """The error itself, or what went wrong inside Hydra's InstantiationException."""
    return error.__cause__ if isinstance(error, InstantiationException) and error.__cause__ else error


# what Python says when a config gives a function arguments it does not take: the config's mistake
WRONG_ARGUMENTS = re.compile(r"unexpected keyword argument|missing \d+ required|takes \d+ positional")


def is_config_mistake(error: BaseException) -> bool:
    """An error building an object from a config that the config caused: a bad value (ValueError), a file or
    model that is not there (OSError), a `_target_` that does not exist (ImportError), arguments the
    target does not take. Anything else raised while building is a bug, shown with its traceback."""
    if isinstance(error, (ValueError, OSError, ImportError)):
        return True
    return isinstance(error, TypeError) and bool(WRONG_ARGUMENTS.search(str(error)))


def user_error(error: BaseException) -> BaseException | None:
    """textclf's own error to show as is (bad input, a bad setting, a bad checkpoint, a file it cannot
    write), or a config's mistake unwrapped from Hydra's InstantiationException; None for anything else."""
    if isinstance(error, TextclfError):
        return error
    cause = unwrap(error)
    return cause if isinstance(error, InstantiationException) and is_config_mistake(cause) else None


def error_line(error: BaseException) -> str:
    """One line saying what went wrong: a user error's message (an instantiation's prefixed with the config
    node it built), else the exception type and first line."""
    if (known := user_error(error)) is not None:
        if known is error or isinstance(known, TextclfError):
            return str(known)
        node = re.search(r"full_key: (\S+)", str(error))
        return f"{node.group(1) + ': ' if node else ''}{first_line(known)}"
    cause = unwrap(error)
    return f"{type(cause).__name__}: {first_line(cause)}" if str(cause).strip() else type(cause).__name__


def run_command(function: Callable[[DictConfig], Any], cfg: DictConfig, keep_going: bool = False) -> Any:
    """Run a command's function; a user error ends it with one line and exit status 2, anything else
    with its traceback. `keep_going` (a job of a multirun): any error is shown, written to the run dir's
    error.txt for the sweep summary, and None returned, so that the other jobs still run. The line goes to
    standard error as `textclf: error: ...`, like an argument parser's message, not through logging."""
    try:
        return function(checked(cfg))
    except Exception as error:
        if not keep_going and user_error(error) is None:
            raise
        line = error_line(error)
        for part in line.splitlines():
            print(f"textclf: error: {part}", file=sys.stderr)
        if not keep_going:
            sys.exit(2)
        write_atomically(Path(cfg.paths.output_dir) / ERROR_FILE, lambda path: path.write_text(line + "\n"))
        return None
