"""Sweeps: Optuna trials that fail or get killed without losing the sweep, its summary table, and Hydra
grid multiruns with one run dir per job."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import toy_reviews, toy_training
from optuna.distributions import (
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from textclf.sweep import search_space

TESTS = Path(__file__).resolve().parent


def test_the_search_space_is_written_in_hydra_sweep_syntax() -> None:
    space = search_space(
        {
            "model.lr": "tag(log, interval(1e-5, 3e-4))",
            "model.net.dropout": "interval(0.0, 0.3)",
            "data.batch_size": "choice(16, 32)",
            "data.max_length": "range(64, 257, 64)",
            "trainer": {"max_epochs": "tag(int, interval(1, 4))"},
        }
    )
    assert space == {
        "model.lr": FloatDistribution(1e-5, 3e-4, log=True),
        "model.net.dropout": FloatDistribution(0.0, 0.3),
        "data.batch_size": CategoricalDistribution([16, 32]),
        "data.max_length": IntDistribution(64, 256, step=64),
        "trainer.max_epochs": IntDistribution(1, 4),
    }
    with pytest.raises(ValueError, match=r"hparams_search.params.model.lr: '3e-4' is not a search space"):
        search_space({"model.lr": "3e-4"})


def run(command: str, *overrides: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    return subprocess.run(
        [sys.executable, "-m", f"textclf.{command}", *overrides], capture_output=True, text=True, env=env, cwd=cwd
    )


@pytest.fixture
def quick_training(tiny_model_dir: Path, tmp_path: Path) -> list[str]:
    csv = tmp_path / "reviews.csv"
    toy_reviews(300).to_csv(csv, index=False)
    return [
        *toy_training(csv),
        f"model.net.pretrained={tiny_model_dir}",
        "trainer.max_epochs=1",
        f"paths.cache_dir={tmp_path / 'cache'}",
        "callbacks.progress_bar=null",
        "callbacks.model_summary=null",
        "+trainer.enable_progress_bar=false",
    ]


@pytest.mark.slow
def test_a_sweep_survives_a_failing_trial_and_a_kill_and_resumes_to_its_trial_count(
    quick_training, tmp_path: Path
) -> None:
    sweep_dir = tmp_path / "sweep"
    command = [
        *quick_training,
        f"hydra.run.dir={sweep_dir}",
        "sweep.n_trials=4",
        "+callbacks.fail={_target_:crash.CrashInTrial,trial:1}",
        "+callbacks.kill={_target_:crash.CrashInTrial,trial:2,kill:true}",
    ]
    killed = run("sweep", *command, cwd=tmp_path)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert "trial 1 failed: RuntimeError: forced failure in trial 1" in killed.stderr

    resumed = run("sweep", *command, f"resume={sweep_dir}", cwd=tmp_path)  # the same command, resumed
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "trial 2 was interrupted; its settings run again" in resumed.stderr
    summary = pd.read_csv(sweep_dir / "summary.csv").set_index("trial")
    assert sorted(summary.index) == [0, 1, 2, 3, 4]  # 4 finished trials, plus the killed one
    assert summary.loc[[0, 3, 4], "status"].eq("complete").all()
    assert summary.loc[1, "error"] == "RuntimeError: forced failure in trial 1"
    assert summary.loc[2, "error"] == "interrupted (run again)"
    assert summary.loc[3, "model.lr"] == summary.loc[2, "model.lr"]  # the killed trial's settings, run again
    assert summary.loc[4, "model.lr"] not in set(summary.loc[[0, 1, 2], "model.lr"])  # new draws after resuming
    assert list(summary.sort_index()["seed"]) == [42, 43, 44, 44, 46]  # seed + trial; the rerun keeps its seed
    complete = summary[summary["status"] == "complete"]
    assert list(complete["val/acc_best"]) == sorted(complete["val/acc_best"], reverse=True)  # best first
    assert list(summary.index[: len(complete)]) == list(complete.index)
    for trial in (0, 3, 4):
        assert (sweep_dir / "trials" / f"{trial:03d}" / "metrics.json").is_file()
    assert (sweep_dir / "summary.md").read_text().startswith("|   trial | status")

    printed = subprocess.run(
        [Path(sys.executable).parent / "textclf-sweep-summary", str(sweep_dir)], capture_output=True, text=True
    )
    assert printed.returncode == 0 and "forced failure in trial 1" in printed.stdout


def test_a_grid_multirun_writes_one_run_dir_per_job_and_a_summary(quick_training, tmp_path: Path) -> None:
    sweep_dir = tmp_path / "grid"
    result = run(
        "train",
        "-m",
        *quick_training,
        f"hydra.sweep.dir={sweep_dir}",
        "model.lr=1e-3,3e-3",
        "data.batch_size=16,32",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    jobs = sorted(path.name for path in sweep_dir.iterdir() if path.is_dir())
    assert jobs == ["0", "1", "2", "3"]
    summary = pd.read_csv(sweep_dir / "summary.csv")
    assert len(summary) == 4 and summary["status"].eq("complete").all()
    assert sorted(zip(summary["model.lr"], summary["data.batch_size"])) == [
        (1e-3, 16),
        (1e-3, 32),
        (3e-3, 16),
        (3e-3, 32),
    ]
    assert list(summary["val/acc_best"]) == sorted(summary["val/acc_best"], reverse=True)
    assert "model.net.pretrained" not in summary  # settings all jobs share are left out


def test_a_failing_grid_job_is_recorded_and_the_others_run(quick_training, tmp_path: Path) -> None:
    sweep_dir = tmp_path / "grid"
    result = run(
        "train",
        "-m",
        *quick_training,
        f"hydra.sweep.dir={sweep_dir}",
        "model.net.head=pooler,max,mean",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    summary = pd.read_csv(sweep_dir / "summary.csv").set_index("model.net.head")
    assert summary.loc[["pooler", "mean"], "status"].eq("complete").all()
    assert summary.loc["max", "status"] == "failed"
    assert summary.loc["max", "error"] == "model.net.head must be one of native, pooler, cls, mean, not 'max'"


@pytest.mark.slow
def test_real_ddp_jobs_of_a_multirun_write_one_run_dir_each(quick_training, tmp_path: Path) -> None:
    """strategy=ddp starts each job's second process by running the command again: it must write into
    its job's run dir, not a run dir of its own."""
    sweep_dir = tmp_path / "grid"
    result = run(
        "train",
        "-m",
        *quick_training,
        f"hydra.sweep.dir={sweep_dir}",
        "trainer=ddp_sim",
        "trainer.strategy=ddp",
        "model.lr=1e-3,3e-3",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(path.name for path in sweep_dir.iterdir() if path.is_dir()) == ["0", "1"]
    for job in ("0", "1"):
        assert len(list((sweep_dir / job / "checkpoints").glob("epoch*.ckpt"))) == 1
        assert (sweep_dir / job / "metrics.json").is_file()
    assert not (tmp_path / "outputs").exists()  # no stray run dir from the second processes
