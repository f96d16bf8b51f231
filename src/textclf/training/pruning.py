"""Stopping a sweep's unpromising trials early: Optuna's pruners, fed after every validation.

The trial reports the sweep's metric after each validation (each epoch, or every `val_check_interval`),
numbered 1, 2, ... so that trials with different batch sizes are compared at the same point of training.
When the pruner says stop, the trial ends at once. Under DDP only rank 0 talks to the study; it tells
every rank, and all of them stop together.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning as L
import optuna

from textclf.errors import SettingError
from textclf.training.settings import PRUNERS


def make_pruner(name: str, settings: Mapping[str, Any] | None = None) -> optuna.pruners.BasePruner:
    """Optuna's pruner of that name, with its defaults or `settings` (its keyword arguments; steps and
    Hyperband's resources count validations)."""
    pruners = {
        "none": optuna.pruners.NopPruner,
        "median": optuna.pruners.MedianPruner,
        "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
        "hyperband": optuna.pruners.HyperbandPruner,
    }
    if name not in pruners:
        raise SettingError(f"sweep.pruner must be one of {', '.join(PRUNERS)}, not '{name}'")
    try:
        return pruners[name](**(settings or {}))
    except TypeError as error:
        raise SettingError(f"sweep.pruner_settings: {error}") from None


class TrialPruning(L.Callback):
    """Reports `metric` to the trial after each validation and ends the run when the pruner says so,
    raising `optuna.TrialPruned` on every rank. The trial's `pruned_at` attribute records where.

    It holds where the trial lives rather than the trial, so it can travel to the processes that
    `ddp_spawn` starts; rank 0 opens the study there."""

    def __init__(
        self, storage_url: str, study_name: str, trial_id: int, pruner: optuna.pruners.BasePruner, metric: str
    ) -> None:
        self.storage_url, self.study_name, self.trial_id, self.pruner = storage_url, study_name, trial_id, pruner
        self.metric, self.validations = metric, 0
        self.trial: optuna.Trial | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "trial": None}

    def open_trial(self) -> optuna.Trial:
        if self.trial is None:
            study = optuna.load_study(study_name=self.study_name, storage=self.storage_url, pruner=self.pruner)
            self.trial = optuna.Trial(study, self.trial_id)
        return self.trial

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self.validations += 1
        prune = False
        if trainer.is_global_zero:
            if self.metric not in trainer.callback_metrics:
                logged = ", ".join(sorted(key for key in trainer.callback_metrics if key.startswith("val/")))
                raise SettingError(f"sweep.pruner: '{self.metric}' is not logged at validation (it logs: {logged})")
            trial = self.open_trial()
            trial.report(float(trainer.callback_metrics[self.metric]), step=self.validations)
            prune = trial.should_prune()
            if prune:
                where = f"validation {self.validations} (epoch {trainer.current_epoch}, step {trainer.global_step})"
                trial.set_user_attr("pruned_at", where)
        if trainer.strategy.broadcast(prune, src=0):
            raise optuna.TrialPruned(f"pruned after validation {self.validations}")
