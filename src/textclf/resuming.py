"""Lightning's side of crash-safe checkpoints, so that a resumed run ends with the same numbers as one that
never stopped: checkpoints are written atomically (a kill mid-write leaves the previous one whole), and the
random state travels in the checkpoint and comes back at the first training batch after the resume.
Finding the run to resume and reading checkpoints back need no Lightning: they are in `checkpoints.py`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins import TorchCheckpointIO

from textclf.files import write_atomically


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

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self.pending is None:
            return
        torch.set_rng_state(self.pending["cpu"])
        if "cuda" in self.pending and torch.cuda.is_available():
            torch.cuda.set_rng_state(self.pending["cuda"])
        self.pending = None
