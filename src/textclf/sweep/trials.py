"""One study's trial budget, shared by any number of `textclf-sweep` workers on one machine or many.

Workers share an Optuna storage (SQLite for one machine, PostgreSQL or MySQL for several). A worker asks
the study for a trial and keeps it only while fewer than `n_trials` counted trials come before it: trial
numbers are handed out by the database, unique and in order, so the budget holds however many workers ask
at once (a surplus trial is closed at once and left out of every table). A trial whose worker died does
not count: it is failed and its settings are queued again for any worker, at once when it ran on this
machine (its process is gone), or when its heartbeat stops for longer than the grace period.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import optuna
import sqlalchemy
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, Trial, TrialState

from textclf.errors import SettingError, first_line
from textclf.log import log

WORKER = f"{socket.gethostname()}:{os.getpid()}"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def open_study(
    storage_url: str, study_name: str, direction: str, pruner: optuna.pruners.BasePruner, heartbeat_seconds: int
) -> optuna.Study:
    """The shared study, created by whichever worker comes first; running trials send a heartbeat."""
    engine = {"connect_args": {"timeout": 60}} if storage_url.startswith("sqlite") else {}  # wait for the lock
    attempt = 0
    while True:
        attempt += 1
        try:
            with warnings.catch_warnings():  # the heartbeat is "experimental" in Optuna since 2.9
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                storage = optuna.storages.RDBStorage(
                    storage_url,
                    engine_kwargs=engine,
                    heartbeat_interval=heartbeat_seconds,
                    grace_period=2 * heartbeat_seconds,
                    heartbeat_stale_trial_callback=requeue,
                )
            return optuna.create_study(
                study_name=study_name, storage=storage, direction=direction, pruner=pruner, load_if_exists=True
            )
        except sqlalchemy.exc.SQLAlchemyError as error:
            # workers that start together race to create a new database's tables: the losers try again
            if attempt == 5:
                raise SettingError(f"sweep.storage={storage_url}: {first_line(error)}") from None
            time.sleep(attempt)


def requeue(study: optuna.Study, trial: FrozenTrial) -> None:
    """Queue an interrupted trial's settings again; the rerun keeps the first run's number for its seed."""
    first = trial.user_attrs.get("retry_of", trial.number)
    study.enqueue_trial(trial.params, user_attrs={"retry_of": first})
    log.info(f"trial {trial.number} was interrupted; its settings run again")


def is_interrupted(trial: FrozenTrial) -> bool:
    """Failed without an error of its own: its worker died (the settings were queued again)."""
    return trial.state == TrialState.FAIL and "error" not in trial.user_attrs


def is_surplus(trial: FrozenTrial) -> bool:
    return bool(trial.user_attrs.get("surplus"))


def counts(trial: FrozenTrial) -> bool:
    """Whether a trial uses up one of `n_trials`: it ran, runs, failed or was pruned; not a worker's death."""
    return trial.state in (*FINISHED, TrialState.RUNNING) and not is_interrupted(trial) and not is_surplus(trial)


def recover_interrupted(study: optuna.Study) -> None:
    """Fail and queue again the running trials whose worker died: those started on this machine by a
    process that is gone, and (through the heartbeat) those anywhere that stopped beating."""
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = trial.user_attrs.get("worker", "")
        pid = local_pid(worker)
        if pid is None or worker == WORKER or process_alive(pid):
            continue
        try:
            study.tell(trial.number, state=TrialState.FAIL)
        except (UpdateFinishedTrialError, ValueError, RuntimeError):  # another worker closed it first
            continue
        requeue(study, trial)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def local_pid(worker: str) -> int | None:
    """The process id of a worker named `host:pid` when it runs on this machine, else None."""
    host, _, pid = worker.rpartition(":")
    return int(pid) if host == socket.gethostname() else None


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def claim(study: optuna.Study, n_trials: int) -> Trial | None:
    """A new trial for this worker (a queued rerun first), or None when the budget is spent."""
    if sum(counts(t) for t in study.get_trials(deepcopy=False)) >= n_trials:
        return None
    with warnings.catch_warnings():  # Optuna warns that heartbeats are meant for `optimize`; they serve here too
        warnings.filterwarnings("ignore", message="Heartbeat of storage")
        trial = study.ask()
    before = sum(counts(t) for t in study.get_trials(deepcopy=False) if t.number < trial.number)
    if before >= n_trials:  # another worker took the last place between the count and the ask
        trial.set_user_attr("surplus", True)
        study.tell(trial, state=TrialState.FAIL)
        return None
    trial.set_user_attr("worker", WORKER)
    return trial


def suggest(trial: Trial, space: dict[str, BaseDistribution], seed: int) -> dict[str, Any]:
    """The trial's settings, drawn by TPE seeded with seed + trial number: workers that ask at the same
    moment draw different settings, and one worker's sweep is repeatable."""
    trial.study.sampler = optuna.samplers.TPESampler(seed=seed + trial.number)
    for name, distribution in space.items():
        if isinstance(distribution, FloatDistribution):
            trial.suggest_float(name, distribution.low, distribution.high, step=distribution.step, log=distribution.log)
        elif isinstance(distribution, IntDistribution):
            trial.suggest_int(name, distribution.low, distribution.high, step=distribution.step, log=distribution.log)
        elif isinstance(distribution, CategoricalDistribution):
            trial.suggest_categorical(name, distribution.choices)
    return trial.params


def fresh_user_attrs(study: optuna.Study, trial: Trial) -> dict[str, Any]:
    """The trial's attributes as the database holds them now, including those that the pruning callback
    set through its own connection (a trial object answers from its worker's cache)."""
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    return next((t.user_attrs for t in running if t.number == trial.number), {})


@contextmanager
def heartbeat(study: optuna.Study, trial: Trial, seconds: int) -> Iterator[None]:
    """Beat for the trial while its training runs, so that other workers can tell a dead worker."""
    storage, stop = study._storage, threading.Event()
    storage.record_heartbeat(trial._trial_id)

    def beat() -> None:
        while not stop.wait(seconds):
            storage.record_heartbeat(trial._trial_id)

    thread = threading.Thread(target=beat, name="textclf-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def wait_for_others(study: optuna.Study, poll_seconds: float) -> bool:
    """True while trials run elsewhere: this worker waits, in case one dies and its rerun falls to it."""
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    if running:
        time.sleep(poll_seconds)
    return bool(running)


def local_workers(study: optuna.Study) -> int:
    """How many workers of this study run on this machine now (this one included): each registers itself
    in the study, and those whose process is gone are not counted."""
    study.set_user_attr(f"worker:{WORKER}", time.time())
    pids = [local_pid(key.removeprefix("worker:")) for key in study.user_attrs if key.startswith("worker:")]
    return max(1, sum(pid is not None and process_alive(pid) for pid in pids))
