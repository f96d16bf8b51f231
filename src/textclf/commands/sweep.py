"""`textclf-sweep`: an Optuna search over `textclf-train` runs (`textclf.sweep.study`), and
`textclf-sweep-summary SWEEP_DIR`: the summary table of a finished or running sweep or multirun."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from textclf.running import command_main


def sweep_from_command_line(cfg: DictConfig) -> dict[str, Any]:
    """The sweep, its trials trained with the command line's overrides (less the sweep's own)."""
    from textclf.sweep.space import train_overrides_of
    from textclf.sweep.study import sweep  # Optuna, torch and Lightning: once the settings passed their check

    return sweep(cfg, train_overrides_of(list(HydraConfig.get().overrides.task)))


main = command_main(sweep_from_command_line, "sweep")


def summary_main(argv: list[str] | None = None) -> None:
    """Print (and rewrite) the summary of an existing sweep."""
    from textclf.sweep.summary import publish_summary, summarize  # pandas: not before a sweep's check

    parser = argparse.ArgumentParser(prog="textclf-sweep-summary", description=summary_main.__doc__)
    parser.add_argument("sweep_dir", type=Path, help="an Optuna sweep or a Hydra multirun dir")
    sweep_dir = parser.parse_args(argv).sweep_dir
    if not sweep_dir.is_dir():
        print(f"textclf: error: {sweep_dir}: no such sweep dir", file=sys.stderr)
        sys.exit(2)
    rows = summarize(sweep_dir)
    if rows.empty:
        print(f"textclf: error: {sweep_dir}: no trials or jobs found", file=sys.stderr)
        sys.exit(2)
    print(publish_summary(sweep_dir, rows))  # the command's output


if __name__ == "__main__":
    main()
