"""Progress as log lines, for output that is not a terminal (a SLURM or CI log, a redirected run), where
the progress bar is hidden and a long run would otherwise print nothing for minutes: training steps
(`ProgressLog`; texts processed: `textclf.inference.progress.TextProgress`)."""

from __future__ import annotations

import math
import sys
import time
from typing import Any

import lightning as L

from textclf.log import duration, log
from textclf.training.settings import WHEN


class ProgressLog(L.Callback):
    """Every `every_n_steps` optimizer steps and at each epoch's end, one line: epoch, step of all steps,
    training loss, samples per second and the time left. `enabled`: `auto` (only when standard error is
    not a terminal), `always` or `never`."""

    def __init__(self, every_n_steps: int = 50, enabled: str = "auto") -> None:
        if enabled not in WHEN:
            raise ValueError(f"callbacks.progress_log.enabled must be one of {', '.join(WHEN)}, not '{enabled}'")
        self.every_n_steps, self.enabled = every_n_steps, enabled
        self.active, self.started, self.samples, self.first_step, self.reported = False, 0.0, 0, 0, -1
        self.loss_sum: Any = 0.0  # a tensor on the model's device: read (synchronised) only when reported
        self.batches = 0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.active = self.enabled == "always" or (self.enabled == "auto" and not sys.stderr.isatty())
        self.started, self.samples, self.first_step = time.perf_counter(), 0, trainer.global_step

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.loss_sum, self.batches = 0.0, 0

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not self.active:
            return
        self.samples += len(batch["labels"]) * trainer.world_size
        # Lightning hands over the loss divided by the batches accumulated into one optimizer step
        loss = outputs["loss"].detach() * trainer.accumulate_grad_batches
        self.loss_sum, self.batches = self.loss_sum + loss, self.batches + 1
        step = trainer.global_step  # optimizer steps: several batches make one under gradient accumulation
        if step % self.every_n_steps == 0 and step not in (0, self.reported):
            self.reported = step
            self.report(trainer, f"loss {float(loss):.4f}")

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.active:
            return
        metrics = {"mean loss": float(self.loss_sum) / max(self.batches, 1)}
        task = getattr(pl_module, "task", None)  # none: contrastive pair training (no validation)
        monitor = f"val/{task.monitor}" if task else "val/loss"  # val/acc, or val/pearson for regression
        metrics |= {
            key: float(trainer.callback_metrics[key])
            for key in ("val/loss", monitor, f"{monitor}_best")
            if key in trainer.callback_metrics
        }
        self.report(trainer, "end of epoch, " + ", ".join(f"{key} {value:.4f}" for key, value in metrics.items()))

    def report(self, trainer: L.Trainer, what: str) -> None:
        elapsed = time.perf_counter() - self.started
        done, total = trainer.global_step, trainer.estimated_stepping_batches
        line = f"epoch {trainer.current_epoch + 1}" + (f"/{trainer.max_epochs}" if trainer.max_epochs > 0 else "")
        line += f" step {done}" + (f"/{int(total)}" if math.isfinite(total) else "")
        line += f": {what}, {self.samples / max(elapsed, 1e-9):.1f} samples/s, {duration(elapsed)} elapsed"
        if math.isfinite(total) and done > self.first_step:
            line += f", {duration(elapsed / (done - self.first_step) * (total - done))} left"
        log.info(line)
