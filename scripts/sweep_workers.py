"""Several `textclf-sweep` workers on one study, one of them SIGKILLed in the middle of a trial: how many
trials ran, whether any ran twice or got lost, and who finished the killed one.

    .venv/bin/python scripts/sweep_workers.py --workers 2 --trials 8
    .venv/bin/python scripts/sweep_workers.py --storage postgresql+psycopg://user@host/db

Workers run `experiment=rotten_tomatoes` (the packaged MiniLM) on a small training set, so that the
study, not the training, is what is measured. The first worker is killed a few seconds into its second
trial, from outside, as the OOM killer or a lost machine would end it.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

from textclf.sweep.trials import is_interrupted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--storage", default=None, help="a database URL; default: SQLite in a temp dir")
    parser.add_argument("--train-examples", type=int, default=200)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    scratch = Path(tempfile.mkdtemp(prefix="textclf-workers-"))
    storage = args.storage or f"sqlite:///{scratch / 'study.db'}"
    study_name = f"workers-{time.time_ns()}"
    command = [
        str(Path(sys.executable).parent / "textclf-sweep"),
        "experiment=rotten_tomatoes",
        f"data.max_train_examples={args.train_examples}",
        "trainer.max_epochs=1",
        f"sweep.n_trials={args.trials}",
        f"sweep.storage={storage}",
        f"sweep.study_name={study_name}",
        "callbacks.progress_bar=null",
        "+trainer.enable_progress_bar=false",
    ]
    started = time.perf_counter()
    workers = [
        subprocess.Popen(
            [*command, f"hydra.run.dir={scratch / f'worker{index}'}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for index in range(args.workers)
    ]
    victim = workers[0]
    study = None
    while study is None or not any(
        t.user_attrs.get("worker", "").endswith(f":{victim.pid}") and t.state == TrialState.RUNNING
        for t in study.get_trials(deepcopy=False)
        if t.number > 1  # its second trial or later
    ):
        time.sleep(1)
        try:
            study = optuna.load_study(study_name=study_name, storage=storage)
        except KeyError:  # not created yet
            continue
    time.sleep(3)
    os.kill(victim.pid, signal.SIGKILL)
    killed_at = time.perf_counter() - started
    for worker in workers:
        worker.wait()
    seconds = time.perf_counter() - started

    trials = optuna.load_study(study_name=study_name, storage=storage).get_trials(deepcopy=False)
    done = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    killed = [t for t in trials if is_interrupted(t)]
    run_dirs = [t.user_attrs.get("run_dir") for t in done]
    reruns = {t.user_attrs["retry_of"]: t for t in done if "retry_of" in t.user_attrs}
    print(f"storage: {storage.split('://')[0]}, {args.workers} workers, n_trials={args.trials}")
    print(f"worker {victim.pid} SIGKILLed at {killed_at:.0f} s; all workers done at {seconds:.0f} s")
    print(f"finished trials: {len(done)} (budget {args.trials}); run twice: {len(run_dirs) - len(set(run_dirs))}")
    print(f"interrupted: {[t.number for t in killed]}; lost: {sum(t.number not in reruns for t in killed)}")
    for trial in killed:
        rerun = reruns.get(trial.number)
        if rerun is not None:
            worker, same = rerun.user_attrs["worker"], rerun.params == trial.params
            print(f"trial {trial.number} rerun as trial {rerun.number} by {worker}, same settings: {same}")
    by_worker: dict[str, int] = {}
    for trial in done:
        by_worker[trial.user_attrs["worker"]] = by_worker.get(trial.user_attrs["worker"], 0) + 1
    print(f"finished per worker: {by_worker}")


if __name__ == "__main__":
    main()
