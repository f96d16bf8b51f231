"""`textclf-sweep`: an Optuna search over train settings, each trial a whole `textclf-train` run.

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

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import hydra
import pandas as pd
import yaml
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from textclf.cli import CONFIG_PATH, ERROR_FILE, error_line, run_command
from textclf.errors import SettingError
from textclf.files import write_atomically, write_json_atomically
from textclf.log import log

SWEEP_FILE = "sweep.json"


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


def run_trial(
    train_overrides: list[str],
    params: dict[str, Any],
    seed: int,
    run_dir: Path,
    callbacks: list[Any],
    group: str,
) -> dict[str, Any]:
    """One `textclf-train` run, in-process, in `run_dir`."""
    from textclf.train import train

    overrides = [
        *train_overrides,
        *(f"{key}={value}" for key, value in params.items()),
        f"seed={seed}",
        f"paths.output_dir={run_dir}",
        f"run_group={group}",  # the trials' runs in MLflow or W&B are grouped by the study
    ]
    metrics, _ = train(hydra.compose("train", overrides=overrides), callbacks=callbacks)
    return metrics


SWEEP_ONLY = ("sweep.", "hparams_search", "+hparams_search", "~hparams_search", "resume=", "task_name=")


def train_overrides_of(overrides: list[str]) -> list[str]:
    """The command line's overrides that are train settings (every trial gets them)."""
    return [override for override in overrides if not override.startswith(SWEEP_ONLY)]


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
    import optuna
    import torch
    from optuna.trial import TrialState

    from textclf import trials
    from textclf.pruning import TrialPruning, make_pruner

    settings = cfg.sweep
    check_one_launch_per_trial(cfg.trainer)
    if settings.pruner != "none" and not str(settings.metric).startswith("val/"):
        raise SettingError(f"sweep.pruner needs a metric logged at validation (val/...), not '{settings.metric}'")
    sweep_dir = Path(cfg.paths.output_dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    space = search_space(cfg.hparams_search.params)
    storage = settings.storage or f"sqlite:///{sweep_dir.resolve() / 'study.db'}"
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
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pruner = make_pruner(settings.pruner, settings.pruner_settings)
    study = trials.open_study(storage, settings.study_name, settings.direction, pruner, settings.heartbeat_seconds)
    cores = len(os.sched_getaffinity(0))
    while True:
        trials.recover_interrupted(study)
        trial = trials.claim(study, settings.n_trials)
        if trial is None:
            if trials.wait_for_others(study, poll_seconds=min(10, settings.heartbeat_seconds)):
                continue
            break
        params = trials.suggest(trial, space, cfg.seed)
        seed = cfg.seed + trial.user_attrs.get("retry_of", trial.number)  # a rerun keeps its seed
        threads = settings.threads or max(1, cores // trials.local_workers(study))
        torch.set_num_threads(threads)
        run_dir = sweep_dir / "trials" / f"{trial.number:03d}"
        for key, value in {"seed": seed, "threads": threads, "run_dir": str(run_dir)}.items():
            trial.set_user_attr(key, value)
        log.info(f"trial {trial.number}: {json.dumps(params)}")
        pruning = (
            [TrialPruning(storage, settings.study_name, trial._trial_id, pruner, settings.metric)]
            if settings.pruner != "none"
            else []
        )
        started = time.perf_counter()
        with trials.heartbeat(study, trial, settings.heartbeat_seconds):
            try:
                metrics = run_trial(train_overrides, params, seed, run_dir, pruning, settings.study_name)
                if settings.metric not in metrics:
                    raise ValueError(f"the run reported no '{settings.metric}' (it has: {', '.join(metrics)})")
            except Exception as error:  # noqa: BLE001 — any failure of one trial is recorded; the sweep goes on
                trial.set_user_attr("seconds", round(time.perf_counter() - started, 1))
                pruned_at = trials.fresh_user_attrs(study, trial).get("pruned_at")
                if pruned_at:  # the pruner stopped it (raised on every rank, however DDP wrapped it)
                    study.tell(trial, state=TrialState.PRUNED)
                    log.info(f"trial {trial.number}: pruned after {pruned_at}")
                else:
                    trial.set_user_attr("error", error_line(error))
                    study.tell(trial, state=TrialState.FAIL)
                    log.warning(f"trial {trial.number} failed: {error_line(error)}")
            else:
                trial.set_user_attr("seconds", round(time.perf_counter() - started, 1))
                if f"{settings.metric}_std" in metrics:  # cross-validated: the value is the mean over folds
                    trial.set_user_attr("std", metrics[f"{settings.metric}_std"])
                study.tell(trial, float(metrics[settings.metric]))
                log.info(f"trial {trial.number}: {settings.metric} = {metrics[settings.metric]:.4f}")
        write_summary(sweep_dir, study_rows(study, settings.metric))

    log.info("\n" + publish_summary(sweep_dir, study_rows(study, settings.metric)))
    write_study_figures(sweep_dir, study)
    best = study.best_trial if any(t.state == TrialState.COMPLETE for t in study.trials) else None
    result = (
        {
            "best_trial": best.number,
            settings.metric: best.value,
            "params": best.params,
            "run_dir": best.user_attrs.get("run_dir"),
        }
        if best
        else {"best_trial": None}
    )
    write_json_atomically(sweep_dir / "metrics.json", result)  # the sweep is finished
    return result


def study_rows(study: Any, metric: str) -> pd.DataFrame:
    """One row per trial: number, status, metric, parameters, seed, worker, seconds, where it was pruned,
    the run dir and any error. Cross-validated trials add the metric's standard deviation over the folds."""
    from textclf.trials import is_interrupted, is_surplus

    rows = [
        {
            "trial": t.number,
            "status": STATUS.get(t.state.name, t.state.name.lower()),
            metric: t.value,
            **({f"{metric}_std": t.user_attrs["std"]} if "std" in t.user_attrs else {}),
            **t.params,
            "seed": t.user_attrs.get("seed"),
            "worker": t.user_attrs.get("worker"),
            "threads": t.user_attrs.get("threads"),
            "seconds": t.user_attrs.get("seconds"),
            "pruned_at": t.user_attrs.get("pruned_at", ""),
            "run_dir": t.user_attrs.get("run_dir"),
            "error": t.user_attrs.get("error", "interrupted (run again)" if is_interrupted(t) else ""),
        }
        for t in study.get_trials(deepcopy=False)
        if not is_surplus(t)
    ]
    return best_first(pd.DataFrame(rows), metric, study.direction.name.lower() == "maximize")


STATUS = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running", "WAITING": "waiting"}


def best_first(frame: pd.DataFrame, metric: str, maximize: bool) -> pd.DataFrame:
    if frame.empty:
        return frame
    frame = frame.assign(_done=frame["status"].eq("complete"))
    frame = frame.sort_values(["_done", metric], ascending=[False, not maximize], na_position="last", kind="stable")
    return frame.drop(columns="_done").reset_index(drop=True)


def multirun_rows(sweep_dir: Path) -> pd.DataFrame:
    """One row per job of a Hydra multirun (`textclf-train -m ...`): its overrides and its metric."""
    rows, metric = [], "val/acc_best"
    for job in sorted(
        (p for p in sweep_dir.iterdir() if (p / ".hydra" / "overrides.yaml").is_file()),
        key=lambda p: (len(p.name), p.name),
    ):
        config = OmegaConf.load(job / ".hydra" / "config.yaml")  # resolved with textclf's resolvers (cli.py)
        metric = OmegaConf.select(config, "optimized_metric", default=metric)
        overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()) or []
        params = dict(override.split("=", 1) for override in overrides if "=" in override)
        metrics_file, error_file = job / "metrics.json", job / ERROR_FILE
        metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
        error = error_file.read_text().strip() if error_file.is_file() else ("" if metrics else "no metrics.json")
        rows.append(
            {
                "trial": job.name,
                "status": "complete" if metrics else "failed",
                metric: metrics.get(metric),
                **params,
                "run_dir": str(job),
                "error": error,
            }
        )
    frame = pd.DataFrame(rows)
    if len(frame) > 1:  # the settings every job shares say nothing about the differences between jobs
        shared = [column for column in frame.columns[3:-2] if frame[column].nunique(dropna=False) == 1]
        frame = frame.drop(columns=shared)
    return best_first(frame, metric, maximize=True)


def write_summary(sweep_dir: Path, rows: pd.DataFrame) -> None:
    """summary.csv and summary.md in the sweep dir, best first."""
    write_atomically(sweep_dir / "summary.csv", lambda path: rows.to_csv(path, index=False))
    write_atomically(sweep_dir / "summary.md", lambda path: path.write_text(rows.to_markdown(index=False) + "\n"))


def publish_summary(sweep_dir: Path, rows: pd.DataFrame) -> str:
    """The summary written to the sweep dir; returns it as a table to show (without the run dirs, for width)."""
    write_summary(sweep_dir, rows)
    return rows.drop(columns=["run_dir"], errors="ignore").to_markdown(index=False, floatfmt=".4g")


def write_study_figures(sweep_dir: Path, study: Any) -> None:
    """optimization_history.png and param_importances.png beside the summary."""
    import matplotlib.pyplot as plt

    from textclf.plots import study_figures

    for name, figure in study_figures(study).items():
        write_atomically(sweep_dir / f"{name}.png", lambda path, f=figure: f.savefig(path, format="png", dpi=110))
        plt.close(figure)
    log.info(f"plots of the study: {sweep_dir / 'optimization_history.png'}")


def summarize(sweep_dir: Path) -> pd.DataFrame:
    """The table of an Optuna sweep dir or a Hydra multirun dir."""
    if (sweep_dir / SWEEP_FILE).is_file():
        import optuna

        spec = json.loads((sweep_dir / SWEEP_FILE).read_text())
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.load_study(study_name=spec["study_name"], storage=spec["storage"])
        return study_rows(study, spec["metric"])
    return multirun_rows(sweep_dir)


class MultirunSummary(Callback):
    """Hydra callback: after `textclf-train -m ...`, the summary table of its jobs in the sweep dir."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if sweep_dir.is_dir():
            log.info("\n" + publish_summary(sweep_dir, multirun_rows(sweep_dir)))


def summary_main() -> None:
    """`textclf-sweep-summary SWEEP_DIR`: print (and rewrite) the summary of an existing sweep."""
    if len(sys.argv) != 2 or sys.argv[1].startswith("-"):
        print("usage: textclf-sweep-summary SWEEP_DIR  (an Optuna sweep or a Hydra multirun dir)", file=sys.stderr)
        sys.exit(2)
    sweep_dir = Path(sys.argv[1])
    if not sweep_dir.is_dir():
        print(f"textclf: error: {sweep_dir}: no such sweep dir", file=sys.stderr)
        sys.exit(2)
    rows = summarize(sweep_dir)
    if rows.empty:
        print(f"textclf: error: {sweep_dir}: no trials or jobs found", file=sys.stderr)
        sys.exit(2)
    print(publish_summary(sweep_dir, rows))  # the command's output


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="sweep")
def main(cfg: DictConfig) -> None:
    overrides = train_overrides_of(list(HydraConfig.get().overrides.task))
    run_command(lambda cfg: sweep(cfg, overrides), cfg)


if __name__ == "__main__":
    main()
