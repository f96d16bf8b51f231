"""The summary of a sweep (an Optuna study) or of a Hydra multirun: one row a trial or job, best first,
written as summary.csv and summary.md beside pictures of the study's history and parameter importances."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from textclf.atomic import write_atomically
from textclf.log import log
from textclf.running import ERROR_FILE

SWEEP_FILE = "sweep.json"


def study_rows(study: Any, metric: str) -> pd.DataFrame:
    """One row per trial: number, status, metric, parameters, seed, worker, seconds, where it was pruned,
    the run dir and any error. Cross-validated trials add the metric's standard deviation over the folds."""
    from textclf.sweep.trials import is_interrupted, is_surplus

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
        config = OmegaConf.load(job / ".hydra" / "config.yaml")  # resolved with textclf's resolvers (config.py)
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
