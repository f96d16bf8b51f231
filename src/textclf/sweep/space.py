"""A sweep's search space: `hparams_search.params` in Hydra's sweep syntax (`interval`, `range`, `choice`)
turned into Optuna distributions, and the command line's overrides that each trial trains with."""

from __future__ import annotations

from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep
from omegaconf import DictConfig

from textclf.errors import SettingError


def flatten(params: DictConfig | dict[str, Any], prefix: str = "") -> dict[str, str]:
    """{"model.lr": ...} whether written as a dotted key (YAML) or nested (`+hparams_search.params.model.lr=`)."""
    flat = {}
    for key, value in params.items():
        if isinstance(value, (DictConfig, dict)):
            flat |= flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = str(value)
    return flat


def search_space(params: DictConfig | dict[str, str]) -> dict[str, Any]:
    """Optuna distributions from Hydra sweep syntax (as hydra-optuna-sweeper's `params`):
    interval(a, b), tag(log, interval(a, b)), tag(int, interval(a, b)), choice(x, ...), range(start, stop, step)."""
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    parser, space = OverridesParser.create(), {}
    for key, expression in flatten(params).items():
        override = parser.parse_override(f"{key}={expression}")
        sweep = override.value()
        if isinstance(sweep, ChoiceSweep):
            space[key] = CategoricalDistribution(sweep.list)
        elif isinstance(sweep, RangeSweep):
            space[key] = IntDistribution(int(sweep.start), int(sweep.stop) - 1, step=int(sweep.step or 1))
        elif isinstance(sweep, IntervalSweep):
            log = "log" in sweep.tags
            if "int" in sweep.tags:  # Hydra reads every interval's ends as floats
                space[key] = IntDistribution(int(sweep.start), int(sweep.end), log=log)
            else:
                space[key] = FloatDistribution(float(sweep.start), float(sweep.end), log=log)
        else:
            raise SettingError(
                f"hparams_search.params.{key}: '{expression}' is not a search space "
                "(use interval(a, b), tag(log, interval(a, b)), choice(x, y) or range(a, b, step))"
            )
    return space


SWEEP_ONLY = ("sweep.", "hparams_search", "+hparams_search", "~hparams_search", "resume=", "task_name=")


def train_overrides_of(overrides: list[str]) -> list[str]:
    """The command line's overrides that are train settings (every trial gets them)."""
    return [override for override in overrides if not override.startswith(SWEEP_ONLY)]
