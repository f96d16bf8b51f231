"""What the trackers show besides scalars: the confusion matrix (classification) or predicted against true
scores (regression) after each validation and the test (in TensorBoard, MLflow and W&B), and in TensorBoard
after the test the misclassified examples as a text panel and, for two classes, a precision-recall curve;
and after the test misclassified.html in the run dir, the most confident mistakes with the tokens that made them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.distributed as dist
from lightning.pytorch.loggers import TensorBoardLogger
from torchmetrics.classification import MulticlassConfusionMatrix

from textclf.errors import first_line
from textclf.log import log
from textclf.plots import confusion_figure, scatter_figure
from textclf.training.trackers import log_figure, takes_pictures


def tensorboard_writers(trainer: L.Trainer) -> list[Any]:
    return [logger.experiment for logger in trainer.loggers if isinstance(logger, TensorBoardLogger)]


class EvaluationPicture(L.Callback):
    """A picture of each validation and of the test: `start` when one begins, `update` with each batch's
    outputs (the probabilities, or regression's scores), `draw` at its end as `val/...` or `test/...` for
    every logger that takes pictures. Every rank takes part in `draw`; rank 0 draws."""

    def start(self, pl_module: L.LightningModule) -> None:
        raise NotImplementedError

    def update(self, pl_module: L.LightningModule, outputs: torch.Tensor, batch: Any) -> None:
        raise NotImplementedError

    def draw(self, stage: str, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        raise NotImplementedError

    def _start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.start(pl_module)

    def _update(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if outputs is not None:
            self.update(pl_module, outputs, batch)

    on_validation_epoch_start = on_test_epoch_start = _start
    on_validation_batch_end = on_test_batch_end = _update

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.draw("val", trainer, pl_module)

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.draw("test", trainer, pl_module)


class ConfusionMatrixLogger(EvaluationPicture):
    """Counts (true, predicted) pairs on every rank (the counts are summed across ranks) and draws them as
    `val/confusion_matrix` and `test/confusion_matrix`. Single-label models only; sanity-check validations
    are not drawn."""

    def __init__(self) -> None:
        self.confusion: MulticlassConfusionMatrix | None = None

    def start(self, pl_module: L.LightningModule) -> None:
        self.confusion = None
        if not pl_module.task.multi_label and not pl_module.task.regression:
            self.confusion = MulticlassConfusionMatrix(len(pl_module.id2label)).to(pl_module.device)

    def update(self, pl_module: L.LightningModule, outputs: torch.Tensor, batch: Any) -> None:
        if self.confusion is not None:
            self.confusion.update(outputs.argmax(-1), batch["labels"])

    def draw(self, stage: str, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.confusion is None:
            return
        matrix = self.confusion.compute().cpu().numpy()  # every rank: it sums across them
        self.confusion = None
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        if takes_pictures(trainer.loggers):
            figure = confusion_figure(matrix, list(pl_module.id2label.values()))
            log_figure(trainer.loggers, f"{stage}/confusion_matrix", figure, trainer.global_step)


def gather(parts: list[torch.Tensor]) -> torch.Tensor:
    """This rank's tensors joined, and under DDP every rank's (each evaluated a share of the rows)."""
    joined = torch.cat(parts) if parts else torch.empty(0)
    if dist.is_available() and dist.is_initialized():
        shares: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(shares, joined)
        joined = torch.cat(shares)
    return joined


class ScoreScatterLogger(EvaluationPicture):
    """Regression: predicted against true scores (of every rank), drawn as `val/predicted_vs_true` and
    `test/predicted_vs_true`. Sanity-check validations are not drawn."""

    def __init__(self) -> None:
        self.truth: list[torch.Tensor] = []
        self.predicted: list[torch.Tensor] = []

    def start(self, pl_module: L.LightningModule) -> None:
        self.truth, self.predicted = [], []

    def update(self, pl_module: L.LightningModule, outputs: torch.Tensor, batch: Any) -> None:
        if pl_module.task.regression:
            self.truth.append(batch["labels"].float().cpu())
            self.predicted.append(outputs[:, 0].float().cpu())

    def draw(self, stage: str, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not pl_module.task.regression or trainer.sanity_checking:
            return
        truth, predicted = gather(self.truth), gather(self.predicted)  # every rank takes part
        self.truth, self.predicted = [], []
        if trainer.is_global_zero and len(truth) and takes_pictures(trainer.loggers):
            figure = scatter_figure(truth.numpy(), predicted.numpy(), pl_module.id2label[0])
            log_figure(trainer.loggers, f"{stage}/predicted_vs_true", figure, trainer.global_step)


def confident_mistakes(labels: torch.Tensor, probabilities: torch.Tensor) -> torch.Tensor:
    """The positions of the misclassified rows, the most confident mistake first."""
    predicted = probabilities.argmax(-1)
    wrong = torch.nonzero(predicted != labels).flatten()
    return wrong[probabilities[wrong, predicted[wrong]].argsort(descending=True, stable=True)]


def shown_path(path: Path) -> str:
    """`path` relative to the working directory (where the run was started) when it lies below it."""
    relative = os.path.relpath(path)
    return str(path) if relative.startswith("..") else relative


class TestReport(L.Callback):
    """Collects each test batch's row indices, labels and probabilities (every rank), then on rank 0 writes
    misclassified.html into the run dir (the first `explain_misclassified` of the most confident mistakes with
    the tokens that made them: `textclf-eval`'s page; needs captum) and draws `test/misclassified` (the
    `max_examples` most confident mistakes, with their texts, naming the page) and `test/pr_curve`."""

    def __init__(self, max_examples: int = 50, explain_misclassified: int = 0) -> None:
        self.max_examples, self.explain_misclassified = max_examples, explain_misclassified
        self.rows: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.rows = []

    def on_test_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if outputs is not None and not pl_module.task.multi_label and not pl_module.task.regression:
            self.rows.append((batch["index"].cpu(), batch["labels"].cpu(), outputs.float().cpu()))

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.rows:
            return
        index, labels, probabilities = (gather(list(parts)) for parts in zip(*self.rows))
        self.rows = []
        if not trainer.is_global_zero:
            return
        names = pl_module.id2label
        datamodule = trainer.datamodule
        frame = datamodule.frames["test"] if datamodule is not None and "test" in datamodule.frames else None
        page = self.write_explanations(trainer, pl_module, index, labels, probabilities, frame)
        texts = frame["text"] if frame is not None else None
        for writer in tensorboard_writers(trainer):
            if len(names) == 2:
                writer.add_pr_curve("test/pr_curve", labels == 1, probabilities[:, 1], global_step=trainer.global_step)
            writer.add_text(
                "test/misclassified",
                self.misclassified_markdown(index, labels, probabilities, names, texts, page),
                global_step=trainer.global_step,
            )

    def write_explanations(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        index: torch.Tensor,
        labels: torch.Tensor,
        probabilities: torch.Tensor,
        frame: Any,
    ) -> str | None:
        """misclassified.html in the run dir, by `textclf-eval`'s page function on the module's network as it
        is (the tested weights, on their device, in eval mode) wrapped as inference's `TrainedClassifier` with
        this run's data settings; the line the panel shows about it, or None when there is no page."""
        wrong = confident_mistakes(labels, probabilities)[: self.explain_misclassified]
        if not len(wrong) or frame is None:
            return None
        from textclf.inference.explaining import write_misclassified_page
        from textclf.model.trained import TrainedClassifier

        path, rows = Path(trainer.default_root_dir) / "misclassified.html", index[wrong].tolist()
        pairs = frame["text_pair"].iloc[rows].tolist() if "text_pair" in frame else None
        true = [pl_module.id2label[int(label)] for label in labels[wrong]]
        data = dict(trainer.datamodule.hparams)
        trained = TrainedClassifier(pl_module.net, dict(pl_module.hparams), data, pl_module.tokenizer)
        try:  # the test loop runs without gradients, which attributions need
            with torch.inference_mode(False), torch.enable_grad():
                texts = frame["text"].iloc[rows].tolist()
                if not write_misclassified_page(path, trained, texts, pairs, true, device=str(pl_module.device)):
                    return None
        except Exception as error:  # a report after the test: the run's metrics are still to be written
            log.warning(f"{path.name} not written: {type(error).__name__}: {first_line(error)}")
            return None
        return (
            f"The {len(wrong)} most confident mistakes with the tokens that made them (integrated gradients): "
            f"`misclassified.html` in the run dir, beside `tensorboard/` (`{shown_path(path)}`)."
        )

    def misclassified_markdown(
        self,
        index: torch.Tensor,
        labels: torch.Tensor,
        probabilities: torch.Tensor,
        names: dict[int, str],
        texts: Any,
        page: str | None = None,
    ) -> str:
        """A Markdown table of the most confident mistakes, after the line naming their page if there is one."""
        predicted = probabilities.argmax(-1)
        wrong = confident_mistakes(labels, probabilities)
        lines = [page, ""] if page else []
        lines += [
            f"{len(wrong)} of {len(labels)} test examples misclassified; "
            f"the {min(len(wrong), self.max_examples)} most confident mistakes:",
            "",
            "| true | predicted | probability | text |",
            "|---|---|---|---|",
        ]
        for row in wrong[: self.max_examples].tolist():
            text = str(texts.iloc[int(index[row])]) if texts is not None else f"row {int(index[row])}"
            text = text[:300].replace("|", "\\|").replace("\n", " ")
            lines.append(
                f"| {names[int(labels[row])]} | {names[int(predicted[row])]} | "
                f"{float(probabilities[row, predicted[row]]):.3f} | {text} |"
            )
        return "\n".join(lines)
