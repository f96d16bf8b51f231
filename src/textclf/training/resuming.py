"""Crash-safe checkpoints, so that a resumed run ends with the same numbers as one that never stopped:
checkpoints are written atomically (a kill mid-write leaves the previous one whole), every rank's random state
travels in the checkpoint and comes back at the first training batch after the resume, `last.ckpt` is written often
enough to lose little, and a checkpoint is checked to fit the run before fitting goes on from it. After
fitting, the best checkpoint is read back only when the weights in memory are not its own.
Finding the run dir to resume is `textclf.run_dirs`; the data module keeps the dataloader's position.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.pytorch.callbacks import Checkpoint
from lightning.pytorch.trainer.states import TrainerFn

from textclf.atomic import write_atomically
from textclf.errors import CheckpointError
from textclf.model.loading import read_checkpoint
from textclf.run_dirs import LAST


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to a temporary file beside it, flushes it to disk and renames it.
    (Lightning's own writer stages the file in the system temp dir and copies it over, which is not
    atomic across file systems and holds a second copy of the checkpoint in memory.)"""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        write_atomically(Path(path), lambda target: torch.save(checkpoint, target), what="checkpoint")


class RandomStateCheckpoint(L.Callback):
    """Saves torch's random state (CPU and CUDA) of every rank with each checkpoint and restores each rank's
    own right before the first training batch after a resume, so dropout draws the same masks on every rank
    as in an uninterrupted run. (Only rank 0 writes the checkpoint: the ranks' states are gathered into it.
    Restoring them when the checkpoint loads would be too early: sanity validation and model building come
    in between.) The dataloaders draw from their own generator, never from this state."""

    def __init__(self) -> None:
        self.pending: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        state = {"cpu": torch.get_rng_state()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state()
        if not distributed():
            return state
        ranks: list[Any] = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(ranks, state)  # every rank builds the checkpoint; rank 0 writes it
        return {**ranks[0], "ranks": ranks}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        ranks = state_dict.get("ranks")  # a checkpoint of one process, or of another number of them: rank 0's
        rank = torch.distributed.get_rank() if distributed() else 0
        self.pending = ranks[rank] if ranks and rank < len(ranks) else state_dict

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self.pending is None:
            return
        torch.set_rng_state(self.pending["cpu"])
        if "cuda" in self.pending and torch.cuda.is_available():
            torch.cuda.set_rng_state(self.pending["cuda"])
        self.pending = None


def distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


class LastCheckpoint(Checkpoint):
    """`last.ckpt`, with the optimizer's state, for `resume=auto`: every `every_n_train_steps` optimizer steps,
    after every validation, and when training ends, written once per step at most. (Lightning's
    `ModelCheckpoint(save_top_k=0, save_last=True)` writes `last` only when it has saved a top-k checkpoint
    at the same step, that is, at the end of training; and two of them wrote the same file twice there.)
    As a `Checkpoint`, Lightning runs it after the other callbacks, so what it saves includes their state."""

    def __init__(self, dirpath: str, every_n_train_steps: int = 500, filename: str = LAST) -> None:
        if every_n_train_steps < 1:
            raise ValueError(
                f"callbacks.last_checkpoint.every_n_train_steps must be 1 or more, not {every_n_train_steps}"
            )
        self.path = Path(dirpath) / filename
        self.every_n_train_steps = every_n_train_steps
        self.saved_step = -1

    def save(self, trainer: L.Trainer) -> None:
        step = trainer.global_step
        if step in (0, self.saved_step) or trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING:
            return
        trainer.save_checkpoint(self.path)  # every rank takes part; rank 0 writes
        self.saved_step = step

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.global_step % self.every_n_train_steps == 0:
            self.save(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # a validation at an epoch's end is saved at the epoch's end, after the other callbacks' end-of-epoch
        # work (early stopping): a checkpoint from inside an epoch's end resumes into it without the metrics
        if not getattr(trainer.fit_loop.epoch_loop.batch_progress, "is_last_batch", False):
            self.save(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.save(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.save(trainer)


def holds_best_weights(trainer: L.Trainer, best_path: str) -> bool:
    """Whether the weights in memory are the best checkpoint's: it was saved at the step training ended on
    (the last validation was the best), so it need not be read back. Only the step is read (mmap)."""
    checkpoint = torch.load(best_path, map_location="cpu", mmap=True, weights_only=True)
    return checkpoint.get("global_step") == trainer.global_step


def epoch_position(trainer: L.Trainer | None) -> dict[str, int]:
    """Where fitting is in its epoch, for a data module's state in each checkpoint: the epoch and the batches
    of it already trained on, which a resumed run skips ({} outside fitting)."""
    if trainer is None or trainer.state.fn != TrainerFn.FITTING:
        return {}
    done = trainer.fit_loop.epoch_loop.batch_progress.current.processed
    if done >= trainer.num_training_batches:  # a finished epoch: nothing of it to skip (Lightning may
        done = 0  # draw the next epoch's loader before it counts the epoch as done)
    return {"epoch": trainer.current_epoch, "batches_done": done}


def network_identity(spec: dict[str, Any]) -> dict[str, Any]:
    """What a network's spec must share with another for one's weights and optimizer state to fit the other."""
    return {
        "head": spec.get("head"),
        "peft": spec.get("peft"),
        "num_labels": spec.get("num_labels"),
        "model_type": spec.get("model_config", {}).get("model_type"),
    }


def resume_step(path: Path, spec: dict[str, Any]) -> int:
    """The global step of the checkpoint a run fits on from, once it is known to be readable and to hold the
    network that `spec` (the run's `model.net`) builds; a one-line error otherwise."""
    checkpoint = read_checkpoint(path, mmap=True)
    if "optimizer_states" not in checkpoint:
        raise CheckpointError(f"{path}: holds the weights only (a best checkpoint); fit on from last.ckpt")
    if "network" not in checkpoint:
        raise CheckpointError(
            f"{path}: a checkpoint of textclf 0.1.0 cannot be fitted on from; evaluate, predict "
            "or export it, or train anew"
        )
    saved, wanted = network_identity(checkpoint["network"]), network_identity(spec)
    for key in saved:
        if saved[key] != wanted[key]:
            raise CheckpointError(
                f"{path}: holds a network with {key} {saved[key]}, this run builds one with {wanted[key]}"
            )
    return int(checkpoint["global_step"])
