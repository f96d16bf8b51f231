"""What TensorBoard shows after the test besides scalars: the misclassified examples as a text panel
and, for two classes, a precision-recall curve."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
import torch.distributed as dist
from lightning.pytorch.loggers import TensorBoardLogger


class TestReport(L.Callback):
    """Collects each test batch's row indices, labels and probabilities (every rank), then draws on
    rank 0: `test/misclassified` (the most confident mistakes, with their texts) and `test/pr_curve`."""

    def __init__(self, max_examples: int = 50) -> None:
        self.max_examples = max_examples
        self.rows: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.rows = []

    def on_test_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                          batch_idx: int, dataloader_idx: int = 0) -> None:
        if outputs is not None and not pl_module.hparams.multi_label:
            self.rows.append((batch["index"].cpu(), batch["labels"].cpu(), outputs.float().cpu()))

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.rows:
            return
        index, labels, probabilities = (torch.cat(parts) for parts in zip(*self.rows))
        self.rows = []
        if dist.is_available() and dist.is_initialized():  # every rank tested a share of the rows
            shares: list[Any] = [None] * dist.get_world_size()
            dist.all_gather_object(shares, (index, labels, probabilities))
            index, labels, probabilities = (torch.cat(parts) for parts in zip(*shares))
        loggers = [logger for logger in trainer.loggers if isinstance(logger, TensorBoardLogger)]
        if not trainer.is_global_zero or not loggers:
            return
        names = pl_module.id2label
        datamodule = trainer.datamodule
        texts = datamodule.frames["test"]["text"] if datamodule is not None and "test" in datamodule.frames else None
        for logger in loggers:
            writer = logger.experiment
            if len(names) == 2:
                writer.add_pr_curve("test/pr_curve", labels == 1, probabilities[:, 1], global_step=trainer.global_step)
            writer.add_text("test/misclassified", self.misclassified_markdown(index, labels, probabilities, names, texts),
                            global_step=trainer.global_step)

    def misclassified_markdown(self, index: torch.Tensor, labels: torch.Tensor, probabilities: torch.Tensor,
                               names: dict[int, str], texts: Any) -> str:
        """A Markdown table of the most confident mistakes."""
        predicted = probabilities.argmax(-1)
        wrong = torch.nonzero(predicted != labels).flatten()
        confidence = probabilities[wrong, predicted[wrong]]
        wrong = wrong[confidence.argsort(descending=True)][: self.max_examples]
        lines = [f"{len(torch.nonzero(predicted != labels))} of {len(labels)} test examples misclassified; "
                 f"the {len(wrong)} most confident mistakes:", "", "| true | predicted | probability | text |",
                 "|---|---|---|---|"]
        for row in wrong.tolist():
            text = str(texts.iloc[int(index[row])]) if texts is not None else f"row {int(index[row])}"
            text = text[:300].replace("|", "\\|").replace("\n", " ")
            lines.append(f"| {names[int(labels[row])]} | {names[int(predicted[row])]} | "
                         f"{float(probabilities[row, predicted[row]]):.3f} | {text} |")
        return "\n".join(lines)
