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
import socket
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
from omegaconf import DictConfig

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


def run_trial(train_overrides: list[str], params: dict[str, Any], seed: int, run_dir: Path) -> dict[str, Any]:
    """One `textclf-train` run, in-process, in `run_dir`."""
    from textclf.train import train

    overrides = [
        *train_overrides,
        *(f"{key}={value}" for key, value in params.items()),
        f"seed={seed}",
        f"paths.output_dir={run_dir}",
        f"run_group={json.loads((run_dir.parents[1] / SWEEP_FILE).read_text())['study_name']}",
    ]
    metrics, _ = train(hydra.compose("train", overrides=overrides))
    return metrics


def interrupted_trials(study: Any) -> list[Any]:
    """RUNNING trials that this machine started in a process that is gone (killed, or the machine
    rebooted). Trials running elsewhere are left alone."""
    from optuna.trial import TrialState

    def gone(trial: Any) -> bool:
        attrs = trial.user_attrs
        if attrs.get("host") != socket.gethostname():
            return False
        try:
            os.kill(int(attrs["pid"]), 0)
        except (OSError, KeyError, ValueError):
            return True
        return int(attrs["pid"]) == os.getpid()

    return [trial for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)) if gone(trial)]


SWEEP_ONLY = ("sweep.", "hparams_search", "+hparams_search", "~hparams_search", "resume=", "task_name=")


def train_overrides_of(overrides: list[str]) -> list[str]:
    """The command line's overrides that are train settings (every trial gets them)."""
    return [override for override in overrides if not override.startswith(SWEEP_ONLY)]


def sweep(cfg: DictConfig, train_overrides: list[str]) -> dict[str, Any]:
    """Run trials until the study holds `sweep.n_trials` finished ones; return the best trial."""
    import optuna
    from optuna.trial import TrialState

    settings = cfg.sweep
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
            "train_overrides": train_overrides,
        },
    )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=settings.study_name, storage=storage, direction=settings.direction, load_if_exists=True
    )
    # seeded by the seed and the trials so far: a resumed sweep draws new settings, not the first ones again
    study.sampler = optuna.samplers.TPESampler(seed=cfg.seed + len(study.trials))
    for trial in interrupted_trials(study):  # killed mid-trial: closed without an error, its settings run again
        study.tell(trial.number, state=TrialState.FAIL)
        study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
        log.info(f"trial {trial.number} was interrupted; its settings run again")

    def finished() -> int:  # trials that ran to an end: complete, or failed with an error of their own
        return sum(
            1
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL))
            if t.state == TrialState.COMPLETE or "error" in t.user_attrs
        )

    while finished() < settings.n_trials:
        trial = study.ask(space)
        seed = cfg.seed + trial.user_attrs.get("retry_of", trial.number)  # a rerun keeps its seed
        run_dir = sweep_dir / "trials" / f"{trial.number:03d}"
        for key, value in {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "seed": seed,
            "run_dir": str(run_dir),
        }.items():
            trial.set_user_attr(key, value)
        log.info(f"trial {trial.number}: {json.dumps(trial.params)}")
        started = time.perf_counter()
        try:
            metrics = run_trial(train_overrides, trial.params, seed, run_dir)
            if settings.metric not in metrics:
                raise ValueError(f"the run reported no '{settings.metric}' (it has: {', '.join(metrics)})")
        except Exception as error:  # noqa: BLE001 — any failure of one trial is recorded; the sweep goes on
            trial.set_user_attr("error", error_line(error))
            trial.set_user_attr("seconds", round(time.perf_counter() - started, 1))
            study.tell(trial, state=TrialState.FAIL)
            log.warning(f"trial {trial.number} failed: {error_line(error)}")
        else:
            trial.set_user_attr("seconds", round(time.perf_counter() - started, 1))
            study.tell(trial, float(metrics[settings.metric]))
            log.info(f"trial {trial.number}: {settings.metric} = {metrics[settings.metric]:.4f}")
        write_summary(sweep_dir, study_rows(study, settings.metric))

    log.info("\n" + publish_summary(sweep_dir, study_rows(study, settings.metric)))
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
    """One row per trial: number, status, metric, parameters, seed, seconds, run dir, error."""
    status = {"COMPLETE": "complete", "FAIL": "failed", "RUNNING": "running", "WAITING": "waiting"}
    rows = [
        {
            "trial": t.number,
            "status": status.get(t.state.name, t.state.name.lower()),
            metric: t.value,
            **t.params,
            "seed": t.user_attrs.get("seed"),
            "seconds": t.user_attrs.get("seconds"),
            "run_dir": t.user_attrs.get("run_dir"),
            "error": t.user_attrs.get("error", "interrupted (run again)" if t.state.name == "FAIL" else ""),
        }
        for t in study.get_trials(deepcopy=False)
    ]
    return best_first(pd.DataFrame(rows), metric, study.direction.name.lower() == "maximize")


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
        config = yaml.safe_load((job / ".hydra" / "config.yaml").read_text()) or {}
        metric = config.get("optimized_metric", metric)
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
