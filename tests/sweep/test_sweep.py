"""Sweeps: Optuna trials that fail or get killed without losing the sweep, its summary table, and Hydra
grid multiruns with one run dir per job."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pandas as pd
import pytest
from conftest import child_env, toy_reviews, toy_scores, toy_training
from optuna.distributions import (
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from textclf.errors import SettingError
from textclf.sweep import trials
from textclf.sweep.space import search_space
from textclf.training.pruning import make_pruner


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
    env = child_env()
    return subprocess.run(
        [sys.executable, "-m", "textclf", command, *overrides], capture_output=True, text=True, env=env, cwd=cwd
    )


def quick_overrides(csv: Path, tiny_model_dir: Path, tmp_path: Path) -> list[str]:
    """One quiet epoch of the tiny model on `csv`."""
    return [
        *toy_training(csv),
        f"model.net.pretrained={tiny_model_dir}",
        "trainer.max_epochs=1",
        f"paths.cache_dir={tmp_path / 'cache'}",
        "callbacks.progress_bar=null",
        "callbacks.model_summary=null",
        "+trainer.enable_progress_bar=false",
    ]


@pytest.fixture
def quick_training(tiny_model_dir: Path, tmp_path: Path) -> list[str]:
    csv = tmp_path / "reviews.csv"
    toy_reviews(300).to_csv(csv, index=False)
    return quick_overrides(csv, tiny_model_dir, tmp_path)


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


@pytest.mark.slow
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


@pytest.mark.slow
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
    assert summary.loc["max", "error"] == "model.net.head: 'max' is not a choice (native, pooler, cls, mean)"


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


# a median pruner after one trial, and a learning rate that learns (3e-3) or does not (1e-6)
PRUNE_BAD_LEARNING_RATES = (
    "sweep.pruner=median",
    "sweep.pruner_settings={n_startup_trials: 1, n_warmup_steps: 2}",  # never at validation 1
    "~hparams_search.params",
    "+hparams_search.params={model.lr: 'choice(1e-6, 3e-3)'}",
)


def read_summary(sweep_dir: Path) -> pd.DataFrame:
    return pd.read_csv(sweep_dir / "summary.csv").set_index("trial").sort_index()


@pytest.mark.slow
def test_pruned_trials_stop_after_a_validation_count_toward_the_budget_and_keep_their_run(
    quick_training, tmp_path: Path
) -> None:
    sweep_dir = tmp_path / "sweep"
    result = run(
        "sweep",
        *quick_training,
        "trainer.max_epochs=4",
        f"hydra.run.dir={sweep_dir}",
        "sweep.n_trials=5",
        *PRUNE_BAD_LEARNING_RATES,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    summary = read_summary(sweep_dir)
    assert len(summary) == 5  # pruned trials count toward n_trials
    pruned = summary[summary["status"] == "pruned"]
    assert len(pruned) >= 1 and (summary["status"] == "complete").sum() >= 1
    study = optuna.load_study(study_name="textclf", storage=f"sqlite:///{sweep_dir / 'study.db'}")
    for number, row in pruned.iterrows():
        reported = study.trials[number].intermediate_values
        assert 2 <= max(reported) <= 4, reported  # pruned at a validation past the warm-up, and never tested
        assert row["pruned_at"].startswith(f"validation {max(reported)} (epoch {max(reported) - 1},")
        run_dir = Path(row["run_dir"])
        assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))  # its curves are kept
        assert not (run_dir / "metrics.json").exists()  # not tested: it stopped at once
    assert (sweep_dir / "optimization_history.png").stat().st_size > 10_000
    finished = {trial.value for trial in study.trials if trial.state == optuna.trial.TrialState.COMPLETE}
    if len(finished) > 1:  # fANOVA needs two finished trials that differ (plots.study_figures)
        assert (sweep_dir / "param_importances.png").stat().st_size > 10_000


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL server in a temporary data directory, for the life of this module."""
    binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if not binaries:
        pytest.skip("no PostgreSQL server (Debian package postgresql; .ci/run installs it)")
    pytest.importorskip("psycopg", reason="psycopg (the dev extra) is needed to reach PostgreSQL")
    bin_dir = Path(binaries[-1]).parent
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []  # it refuses to run as root
    data = Path(tempfile.mkdtemp(prefix="textclf-postgres-"))
    if as_postgres:
        shutil.chown(data, "postgres")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    pg = [*as_postgres, str(bin_dir / "pg_ctl"), "-D", str(data / "db")]
    subprocess.run(
        [*as_postgres, str(bin_dir / "initdb"), "-D", str(data / "db"), "-A", "trust", "-U", "textclf"],
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -k {data} -c listen_addresses=127.0.0.1"
    subprocess.run([*pg, "-o", options, "-l", str(data / "log"), "-w", "start"], check=True, capture_output=True)
    try:
        subprocess.run(
            [str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "textclf", "sweeps"],
            check=True,
            capture_output=True,
        )
        yield f"postgresql+psycopg://textclf@127.0.0.1:{port}/sweeps"
    finally:
        subprocess.run([*pg, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(data, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_two_workers_share_one_study_and_one_finishes_the_trial_of_a_killed_one(
    database: str, quick_training, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    storage = f"sqlite:///{tmp_path / 'study.db'}" if database == "sqlite" else request.getfixturevalue("postgres_url")
    study_name = f"two-{database}-{time.time_ns()}"
    command = [*quick_training, "sweep.n_trials=5", f"sweep.storage={storage}", f"sweep.study_name={study_name}"]
    env = child_env()

    def worker(name: str, *extra: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "textclf", "sweep", *command, f"hydra.run.dir={tmp_path / name}", *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=tmp_path,
        )

    # worker a dies (SIGKILL) in the middle of its first trial
    a = worker("a", "+callbacks.kill={_target_:crash.KillAtStep,step:5}")
    b = worker("b")
    out_a, out_b = a.communicate(timeout=600)[0], b.communicate(timeout=600)[0]
    assert a.returncode == -signal.SIGKILL, out_a[-2000:]
    assert b.returncode == 0, out_b[-2000:]

    study = optuna.load_study(study_name=study_name, storage=storage)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    killed = [t for t in study.trials if trials.is_interrupted(t)]
    assert len(done) == 5  # the budget, no more and no less
    assert len({t.user_attrs["run_dir"] for t in done}) == 5  # no trial ran twice
    assert len(killed) == 1 and killed[0].user_attrs["worker"].endswith(f":{a.pid}")
    rerun = [t for t in done if t.user_attrs.get("retry_of") == killed[0].number]
    assert len(rerun) == 1 and rerun[0].params == killed[0].params
    assert rerun[0].user_attrs["worker"].endswith(f":{b.pid}")  # finished by the worker that lived
    summary = read_summary(tmp_path / "b")
    assert len(summary) == 6 and set(summary["status"]) == {"complete", "failed"}
    assert summary.loc[killed[0].number, "error"] == "interrupted (run again)"


@pytest.mark.slow
def test_a_trial_whose_heartbeat_stops_is_failed_and_its_settings_queued_again(tmp_path: Path) -> None:
    """The check that finds a dead worker on another machine: no heartbeat for twice the interval."""
    study = trials.open_study(f"sqlite:///{tmp_path / 'study.db'}", "beats", "maximize", make_pruner("none"), 1)
    space = {"model.lr": FloatDistribution(1e-5, 1e-3)}
    trial = study.ask(space)
    trial.set_user_attr("worker", "elsewhere:1")
    with trials.heartbeat(study, trial, seconds=1):
        time.sleep(2.5)
        trials.recover_interrupted(study)  # beating: left alone
        assert study.trials[0].state == optuna.trial.TrialState.RUNNING
    time.sleep(2.5)
    trials.recover_interrupted(study)
    assert trials.is_interrupted(study.trials[0])
    rerun = trials.claim(study, n_trials=1)
    assert rerun is not None and rerun.user_attrs["retry_of"] == 0
    assert trials.suggest(rerun, space, seed=0) == trial.params
    assert trials.claim(study, n_trials=1) is None  # the rerun took the one place


def test_workers_on_this_machine_share_its_cores(tmp_path: Path) -> None:
    study = trials.open_study(f"sqlite:///{tmp_path / 'study.db'}", "cores", "maximize", make_pruner("none"), 30)
    assert trials.local_workers(study) == 1
    other = subprocess.Popen(["sleep", "60"])
    study.set_user_attr(f"worker:{socket.gethostname()}:{other.pid}", time.time())
    assert trials.local_workers(study) == 2
    other.kill()
    other.wait()
    assert trials.local_workers(study) == 1  # a worker that is gone no longer counts


@pytest.mark.slow
def test_pruner_and_launch_settings_are_checked_with_one_line(quick_training, tmp_path: Path) -> None:
    with pytest.raises(SettingError, match="sweep.pruner must be one of none, median, successive_halving, hyperband"):
        make_pruner("patient")
    with pytest.raises(SettingError, match="sweep.pruner_settings: .*unexpected keyword argument 'patience'"):
        make_pruner("median", {"patience": 3})
    result = run("sweep", *quick_training, "sweep.pruner=median", "sweep.metric=test/acc", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "textclf: error: sweep.pruner: median needs sweep.metric logged at validation (val/...), not 'test/acc'"
    )
    result = run("sweep", *quick_training, "trainer.devices=2", "trainer.strategy=ddp", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "textclf: error: textclf-sweep: trainer.devices=2 with trainer.strategy=ddp: a trial on several devices "
        "needs trainer.strategy=ddp_spawn; or start one worker per device (docs/sweeps.md)"
    )


@pytest.mark.long
def test_under_ddp_rank_zero_prunes_and_every_rank_stops_with_it(tiny_model_dir: Path, tmp_path: Path) -> None:
    csv = tmp_path / "reviews.csv"
    toy_reviews(600).to_csv(csv, index=False)  # each rank sees half: 30 steps of 8 per validation, so that
    sweep_dir = tmp_path / "sweep"  # the good learning rate has learned by validation 2 whatever the seed
    result = run(
        "sweep",
        *quick_overrides(csv, tiny_model_dir, tmp_path),
        "trainer=ddp_sim",  # two processes (ddp_spawn, gloo)
        "trainer.precision=32-true",
        "trainer.max_epochs=4",
        "data.batch_size=8",
        f"hydra.run.dir={sweep_dir}",
        "sweep.n_trials=3",
        *PRUNE_BAD_LEARNING_RATES,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    summary = read_summary(sweep_dir)
    assert summary["status"].iloc[0] == "complete" and "pruned" in set(summary["status"])
    study = optuna.load_study(study_name="textclf", storage=f"sqlite:///{sweep_dir / 'study.db'}")
    pruned = [number for number, status in summary["status"].items() if status == "pruned"]
    for number in pruned:  # stopped at the validation where rank 0 was told to prune, past the warm-up
        reached = max(study.trials[number].intermediate_values)
        assert reached >= 2 and summary.loc[number, "pruned_at"].startswith(f"validation {reached} (epoch")


@pytest.mark.slow
def test_a_regression_sweep_minimizes_an_error(tiny_model_dir: Path, tmp_path: Path) -> None:
    csv = tmp_path / "scores.csv"
    toy_scores(200).to_csv(csv, index=False)
    sweep_dir = tmp_path / "sweep"
    result = run(
        "sweep",
        *quick_overrides(csv, tiny_model_dir, tmp_path),
        "data.task=regression",
        f"hydra.run.dir={sweep_dir}",
        "sweep.n_trials=3",
        "sweep.metric=val/mae",
        "sweep.direction=minimize",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    study = optuna.load_study(study_name="textclf", storage=f"sqlite:///{sweep_dir / 'study.db'}")
    assert study.direction == optuna.study.StudyDirection.MINIMIZE
    summary = read_summary(sweep_dir)
    assert (summary["status"] == "complete").all() and len(summary) == 3
    assert study.best_value == pytest.approx(summary["val/mae"].min())
    assert study.best_trial.number == summary["val/mae"].idxmin()


@pytest.mark.slow
def test_a_contrastive_sweep_searches_the_strategys_knobs(quick_training, tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    result = run(
        "sweep",
        *quick_training,
        "strategy=contrastive",
        "hparams_search=contrastive",
        "data.train_per_class=8",
        "sweep.pruner=median",  # a contrastive run validates once, after both phases: never pruned
        f"hydra.run.dir={sweep_dir}",
        "sweep.n_trials=3",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    summary = read_summary(sweep_dir)
    assert (summary["status"] == "complete").all() and len(summary) == 3
    assert summary["strategy.body_lr"].nunique() == 3 and set(summary["strategy.loss"]) <= {"cosine", "contrastive"}
    assert summary["val/acc_best"].notna().all()
