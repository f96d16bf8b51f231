"""`sweep(cfg, ...)`, behind `textclf-sweep`: an Optuna search over train settings, each trial a whole
`textclf-train` run.

    textclf-sweep experiment=rotten_tomatoes sweep.n_trials=20   # any textclf-train override
    textclf-sweep experiment=rotten_tomatoes resume=auto          # go on with an interrupted sweep
    textclf-sweep-summary outputs/sweep/runs/2026-11-24_10-00-00  # its table (Hydra -m multiruns too)

It drives a current Optuna directly (hydra-optuna-sweeper pins optuna<3, whose SQLite storage fails
with SQLAlchemy 2). The study lives in an Optuna storage (SQLite in the sweep dir by default, or
any database URL, so workers on several machines can share it); a trial that fails is recorded with its
error and the sweep goes on; a trial that was killed is run again when the sweep resumes; trial n trains
with seed + n. Grid sweeps stay with Hydra: `textclf-train -m model.lr=1e-5,3e-5`.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
import optuna
import torch
from omegaconf import DictConfig
from optuna.trial import TrialState

from textclf.atomic import write_json_atomically
from textclf.config import with_search_path
from textclf.errors import SettingError
from textclf.log import log
from textclf.running import error_line
from textclf.sweep import trials
from textclf.sweep.space import search_space
from textclf.sweep.summary import SWEEP_FILE, publish_summary, study_rows, write_study_figures, write_summary
from textclf.training.fit import train
from textclf.training.pruning import TrialPruning, make_pruner
from textclf.validation import checked


def run_trial(
    train_overrides: list[str],
    params: dict[str, Any],
    seed: int,
    run_dir: Path,
    callbacks: list[Any],
    group: str,
) -> dict[str, Any]:
    """One `textclf-train` run, in-process, in `run_dir`."""
    overrides = [
        *train_overrides,
        *(f"{key}={value}" for key, value in params.items()),
        f"seed={seed}",
        f"paths.output_dir={run_dir}",
        f"run_group={group}",  # the trials' runs in MLflow or W&B are grouped by the study
    ]
    cfg = hydra.compose("train", overrides=with_search_path("train", overrides))
    metrics, _ = train(checked(cfg), callbacks=callbacks)
    return metrics


def check_one_launch_per_trial(trainer: DictConfig) -> None:
    """A trial runs inside this process. Lightning's `ddp` launcher starts the other ranks by running the
    command again, which for a sweep would start more workers, so several devices need `ddp_spawn`."""
    devices, strategy = trainer.get("devices"), str(trainer.get("strategy", "auto"))
    if str(devices) != "1" and "spawn" not in strategy:
        raise SettingError(
            f"textclf-sweep: trainer.devices={devices} with trainer.strategy={strategy}: a trial on several "
            "devices needs trainer.strategy=ddp_spawn; or start one worker per device (docs/sweeps.md)"
        )


def sweep(cfg: DictConfig, train_overrides: list[str]) -> dict[str, Any]:
    """Run trials until the study holds `sweep.n_trials` of them, shared with any other workers; return the best."""
    settings = cfg.sweep
    check_one_launch_per_trial(cfg.trainer)
    if settings.pruner != "none" and not str(settings.metric).startswith("val/"):
        raise SettingError(f"sweep.pruner needs a metric logged at validation (val/...), not '{settings.metric}'")
    sweep_dir = Path(cfg.paths.output_dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    space = search_space(cfg.hparams_search.params)
    storage = settings.storage or f"sqlite:///{sweep_dir.resolve() / 'study.db'}"
    write_sweep_file(sweep_dir, storage, settings, train_overrides)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pruner = make_pruner(settings.pruner, settings.pruner_settings)
    study = trials.open_study(storage, settings.study_name, settings.direction, pruner, settings.heartbeat_seconds)
    cores = len(os.sched_getaffinity(0))
    while (trial := next_trial(study, settings)) is not None:
        params, seed, run_dir = start_trial(study, trial, settings, space, cfg.seed, cores, sweep_dir)
        pruning = (
            [TrialPruning(storage, settings.study_name, trial._trial_id, pruner, settings.metric)]
            if settings.pruner != "none"
            else []
        )
        run = functools.partial(run_trial, train_overrides, params, seed, run_dir, pruning, settings.study_name)
        run_and_record(study, trial, settings, run)
        write_summary(sweep_dir, study_rows(study, settings.metric))
    return finish(study, settings.metric, sweep_dir)


def write_sweep_file(sweep_dir: Path, storage: str, settings: DictConfig, train_overrides: list[str]) -> None:
    """Where the study lives and what it optimizes, in the sweep dir: `textclf-sweep-summary` reads the
    study back from it."""
    write_json_atomically(
        sweep_dir / SWEEP_FILE,
        {
            "storage": storage,
            "study_name": settings.study_name,
            "metric": settings.metric,
            "direction": settings.direction,
            "pruner": settings.pruner,
            "train_overrides": train_overrides,
        },
    )


def next_trial(study: optuna.Study, settings: DictConfig) -> optuna.Trial | None:
    """The next trial this worker runs; None once the study holds all its trials and none runs elsewhere
    (while one does, this worker waits: should it die, its rerun may fall to this one)."""
    while True:
        trials.recover_interrupted(study)
        trial = trials.claim(study, settings.n_trials)
        if trial is not None or not trials.wait_for_others(study, poll_seconds=min(10, settings.heartbeat_seconds)):
            return trial


def start_trial(
    study: optuna.Study,
    trial: optuna.Trial,
    settings: DictConfig,
    space: dict[str, Any],
    base_seed: int,
    cores: int,
    sweep_dir: Path,
) -> tuple[dict[str, Any], int, Path]:
    """The trial's settings, seed and run dir; this process's threads set to its share of the cores. Seed,
    threads and run dir are recorded on the trial, for the summary and for a rerun."""
    params = trials.suggest(trial, space, base_seed)
    seed = base_seed + trial.user_attrs.get("retry_of", trial.number)  # a rerun keeps its seed
    threads = settings.threads or max(1, cores // trials.local_workers(study))
    torch.set_num_threads(threads)
    run_dir = sweep_dir / "trials" / f"{trial.number:03d}"
    for key, value in {"seed": seed, "threads": threads, "run_dir": str(run_dir)}.items():
        trial.set_user_attr(key, value)
    log.info(f"trial {trial.number}: {json.dumps(params)}")
    return params, seed, run_dir


def run_and_record(
    study: optuna.Study, trial: optuna.Trial, settings: DictConfig, run: Callable[[], dict[str, Any]]
) -> None:
    """Runs the trial under its heartbeat and tells the study how it ended, with its duration: its value,
    pruned, or failed with its error; a trial's failure does not stop the sweep."""
    started = time.perf_counter()
    with trials.heartbeat(study, trial, settings.heartbeat_seconds):
        try:
            metrics = run()
            if settings.metric not in metrics:
                raise ValueError(f"the run reported no '{settings.metric}' (it has: {', '.join(metrics)})")
        except Exception as error:  # noqa: BLE001 — any failure of one trial is recorded; the sweep goes on
            trial.set_user_attr("seconds", round(time.perf_counter() - started, 1))
            record_failure(study, trial, error)
        else:
            trial.set_user_attr("seconds", round(time.perf_counter() - started, 1))
            if f"{settings.metric}_std" in metrics:  # cross-validated: the value is the mean over folds
                trial.set_user_attr("std", metrics[f"{settings.metric}_std"])
            study.tell(trial, float(metrics[settings.metric]))
            log.info(f"trial {trial.number}: {settings.metric} = {metrics[settings.metric]:.4f}")


def record_failure(study: optuna.Study, trial: optuna.Trial, error: Exception) -> None:
    """A trial that raised is pruned when the pruner stopped it, else failed with its error (which keeps it
    from being taken for a killed trial and run again)."""
    pruned_at = trials.fresh_user_attrs(study, trial).get("pruned_at")
    if pruned_at:  # the pruner stopped it (raised on every rank, however DDP wrapped it)
        study.tell(trial, state=TrialState.PRUNED)
        log.info(f"trial {trial.number}: pruned after {pruned_at}")
    else:
        trial.set_user_attr("error", error_line(error))
        study.tell(trial, state=TrialState.FAIL)
        log.warning(f"trial {trial.number} failed: {error_line(error)}")


def finish(study: optuna.Study, metric: str, sweep_dir: Path) -> dict[str, Any]:
    """The sweep's summary and figures, and its result, the best trial (None when none completed), written
    as `metrics.json`: the mark of a finished sweep."""
    log.info("\n" + publish_summary(sweep_dir, study_rows(study, metric)))
    write_study_figures(sweep_dir, study)
    best = study.best_trial if any(t.state == TrialState.COMPLETE for t in study.trials) else None
    result = (
        {
            "best_trial": best.number,
            metric: best.value,
            "params": best.params,
            "run_dir": best.user_attrs.get("run_dir"),
        }
        if best
        else {"best_trial": None}
    )
    write_json_atomically(sweep_dir / "metrics.json", result)  # the sweep is finished
    return result
