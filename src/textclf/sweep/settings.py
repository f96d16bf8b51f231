"""The schema of `textclf-sweep` (sweep.yaml, `textclf.schema`): `textclf-train`'s keys, the search space and
the study's settings. Light: no Optuna."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textclf.schema import POSITIVE, Rule, contradiction, number, one_of, register, selected, setting, whole
from textclf.training.settings import PRUNERS, TrainSettings

DIRECTIONS = ("maximize", "minimize")


@dataclass
class StudySettings:
    """sweep.yaml `sweep`: the study's budget, metric, storage, pruner and workers."""

    n_trials: int = setting(POSITIVE)
    metric: str = setting()
    direction: str = setting(one_of(DIRECTIONS))
    study_name: str = setting()
    storage: str | None = setting()
    pruner: str = setting(one_of(PRUNERS))
    pruner_settings: Any = setting(
        Rule("a mapping of the pruner's arguments, or null", lambda v: isinstance(v, dict), "not allowed", True)
    )
    threads: int | None = setting(whole(1, optional=True, note="the cores shared by the workers"))
    heartbeat_seconds: float = setting(number(0, low_open=True))


@dataclass
class SweepSettings(TrainSettings):
    """conf/sweep.yaml: train.yaml's keys, the search space and the study."""

    sweep: StudySettings = setting()
    hparams_search: Any = setting()


register("sweep", SweepSettings)


@contradiction
def pruning_on_a_test_metric(cfg: Any) -> str | None:
    metric, pruner = selected(cfg, "sweep.metric"), selected(cfg, "sweep.pruner")
    if pruner not in (None, "none") and not str(metric).startswith("val/"):
        return f"sweep.pruner: {pruner} needs sweep.metric logged at validation (val/...), not {metric!r}"
    return None
