"""Ways to kill a training run for the resume tests, added as callbacks on the command line:
`+callbacks.crash={_target_:crash.KillAtStep,step:13}` (with tests/ on PYTHONPATH)."""

from __future__ import annotations

import io
import os
import signal
from pathlib import Path
from typing import Any

import lightning as L
import torch


def kill_now() -> None:
    """SIGKILL: no exception, no cleanup, no flushing (as preemption or the OOM killer would)."""
    os.kill(os.getpid(), signal.SIGKILL)


class KillAtStep(L.Callback):
    """Kill the process after optimizer step `step`."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.global_step >= self.step:
            kill_now()


class KillDuringCheckpointWrite(L.Callback):
    """Kill the process half-way through writing its `write`-th checkpoint file."""

    def __init__(self, write: int) -> None:
        real_save, calls = torch.save, []

        def save(obj: Any, target: Any, *args: Any, **kwargs: Any) -> None:
            calls.append(target)
            if len(calls) < write:
                return real_save(obj, target, *args, **kwargs)
            buffer = io.BytesIO()
            real_save(obj, buffer, *args, **kwargs)
            with open(target, "wb") as handle:
                handle.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
                handle.flush()
            kill_now()

        torch.save = save


class CrashInTrial(L.Callback):
    """In a sweep, make trial `trial` fail with an exception, or (kill=true) SIGKILL the whole sweep."""

    def __init__(self, trial: int, kill: bool = False) -> None:
        self.trial, self.kill = trial, kill

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if Path(trainer.default_root_dir).name == f"{self.trial:03d}":
            if self.kill:
                kill_now()
            raise RuntimeError(f"forced failure in trial {self.trial}")


class KillInFold(L.Callback):
    """In a cross-validation, SIGKILL the run after optimizer step `step` of fold `fold`."""

    def __init__(self, fold: int, step: int) -> None:
        self.fold, self.step = fold, step

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if Path(trainer.default_root_dir).name == f"fold_{self.fold}" and trainer.global_step >= self.step:
            kill_now()
