"""Crash-safe checkpoints and resuming a killed run exactly where it stopped.

Lightning saves the model, optimizer, scheduler, loop progress and callback states. Three things are
added here so that a resumed run ends with the same numbers as one that never stopped: checkpoints are
written atomically (a kill mid-write leaves the previous one whole), the random state travels in the
checkpoint and comes back at the first training batch after the resume, and `resume=auto` finds the
run to continue. The data module keeps the dataloader's position in the epoch (see `data.py`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins import TorchCheckpointIO

from textclf.files import write_atomically
from textclf.model import CheckpointError

LAST = "last.ckpt"


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to a temporary file beside it, flushes it to disk and renames it.
    (Lightning's own writer stages the file in the system temp dir and copies it over, which is not
    atomic across file systems and holds a second copy of the checkpoint in memory.)"""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        write_atomically(Path(path), lambda target: torch.save(checkpoint, target), what="checkpoint")


class RandomStateCheckpoint(L.Callback):
    """Saves torch's random state (CPU and CUDA) with each checkpoint and restores it right before the
    first training batch after a resume, so dropout draws the same masks as in an uninterrupted run.
    (Restoring it when the checkpoint loads would be too early: sanity validation and model building
    come in between.) The dataloaders draw from their own generator, never from this state."""

    def __init__(self) -> None:
        self.pending: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        state = {"cpu": torch.get_rng_state()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.pending = state_dict

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        if self.pending is None:
            return
        torch.set_rng_state(self.pending["cpu"])
        if "cuda" in self.pending and torch.cuda.is_available():
            torch.cuda.set_rng_state(self.pending["cuda"])
        self.pending = None


def is_unfinished(run_dir: Path) -> bool:
    """A run that saved a checkpoint (or a sweep that started its study) but never wrote its final metrics."""
    started = (run_dir / "checkpoints" / LAST).is_file() or (run_dir / "sweep.json").is_file()
    return started and not (run_dir / "metrics.json").exists()


def run_dir(resume: str | None, fresh: str) -> str:
    """Hydra's run dir (resolver `textclf_run_dir`): `fresh` for a new run; with `resume=auto` the newest
    unfinished run beside it (or `fresh` when there is none); with `resume=<run dir>` that run."""
    if resume is None:
        return fresh
    if str(resume) != "auto":
        return str(resume)
    runs = Path(fresh).parent
    candidates = [path for path in runs.iterdir() if path.is_dir() and is_unfinished(path)] if runs.is_dir() else []
    return str(max(candidates, key=lambda path: path.stat().st_mtime)) if candidates else fresh


def resume_checkpoint(output_dir: Path, resume: str | None) -> Path | None:
    """The checkpoint a resumed run continues from: the run dir's last.ckpt, or None for a new run."""
    if resume is None:
        return None
    last = output_dir / "checkpoints" / LAST
    if last.is_file():
        return last
    if str(resume) != "auto":
        raise CheckpointError(f"resume={resume}: no checkpoint to resume from ({last} not found)")
    return None


def checkpoint_step(path: Path) -> int:
    """The global step a checkpoint was saved at (read without unpickling code)."""
    return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["global_step"])
