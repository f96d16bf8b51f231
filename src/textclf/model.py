"""The classifier: a Hugging Face encoder, a pooled representation and a dropout + linear head."""

from __future__ import annotations

import functools
from typing import Any

import lightning as L
import torch
from torch import nn
from torchmetrics import MaxMetric, MeanMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score, MulticlassPrecision, MulticlassRecall
from transformers import AutoConfig, AutoModel, get_linear_schedule_with_warmup

from textclf.pretrained import resolve_pretrained

NO_DECAY = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight")


def stage_metrics(num_labels: int, stage: str) -> MetricCollection:
    """Accuracy plus macro F1, precision and recall: the same code for binary and multi-class tasks."""
    metrics = {"acc": MulticlassAccuracy(num_labels, average="micro"), "f1": MulticlassF1Score(num_labels, average="macro")}
    if stage == "test":
        metrics |= {"precision": MulticlassPrecision(num_labels, average="macro"),
                    "recall": MulticlassRecall(num_labels, average="macro")}
    return MetricCollection(metrics, prefix=f"{stage}/")


class TextClassifier(L.LightningModule):
    """A BERT-family encoder fine-tuned for single-label text classification.

    `id2label` is saved with the checkpoint's hyper-parameters together with the encoder's config, so a
    checkpoint alone rebuilds the model (no download) and names its predictions.
    """

    def __init__(
        self,
        id2label: dict[int, str],
        pretrained: str = "all-MiniLM-L6-v2",
        pooling: str = "cls",
        dropout: float = 0.1,
        lr: float = 5e-5,
        weight_decay: float = 0.01,
        warmup_fraction: float = 0.1,
        optimizer: functools.partial | None = None,
        scheduler: functools.partial | None = None,
        attn_implementation: str = "sdpa",
        encoder_config: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if pooling not in ("cls", "mean"):
            raise ValueError(f"model.pooling must be 'cls' or 'mean', not '{pooling}'")
        id2label = {int(index): str(name) for index, name in id2label.items()}
        if encoder_config is None:  # fresh run: pretrained weights
            self.encoder = AutoModel.from_pretrained(resolve_pretrained(pretrained), attn_implementation=attn_implementation)
            encoder_config = self.encoder.config.to_dict()
        else:  # from a checkpoint: the architecture only; the weights follow from the state dict
            config = AutoConfig.for_model(**encoder_config)
            self.encoder = AutoModel.from_config(config, attn_implementation=attn_implementation)
        if getattr(self.encoder, "pooler", None) is not None:
            self.encoder.pooler = None  # unused by the head; unused parameters would break DDP
        # transformers 5 returns from_pretrained models in eval mode (dropout off) and Lightning 2.6 keeps
        # each submodule's mode: switch the encoder to train mode or it would fine-tune without dropout.
        self.encoder.train()
        self.save_hyperparameters(
            {"id2label": id2label, "pretrained": pretrained, "pooling": pooling, "dropout": dropout,
             "lr": lr, "weight_decay": weight_decay, "warmup_fraction": warmup_fraction,
             "attn_implementation": attn_implementation, "encoder_config": encoder_config}
        )
        self.optimizer_factory = optimizer or torch.optim.AdamW
        self.scheduler_factory = scheduler or get_linear_schedule_with_warmup
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.encoder.config.hidden_size, len(id2label)))
        self.loss = nn.CrossEntropyLoss()
        self.train_loss = MeanMetric()
        self.val_metrics = stage_metrics(len(id2label), "val")
        self.test_metrics = stage_metrics(len(id2label), "test")
        self.val_loss, self.test_loss = MeanMetric(), MeanMetric()
        self.val_acc_best = MaxMetric()

    @property
    def id2label(self) -> dict[int, str]:
        return self.hparams.id2label

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Logits, one row per text."""
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.hparams.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        return self.head(pooled)

    def _step(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self(batch["input_ids"], batch["attention_mask"])
        return self.loss(logits.float(), batch["labels"]), logits

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, _ = self._step(batch)
        self.train_loss(loss.detach())
        self.log("train/loss", loss.detach(), on_step=True, on_epoch=False, prog_bar=True, batch_size=len(batch["labels"]))
        return loss

    def on_train_epoch_end(self) -> None:
        self.log("train/loss_epoch", self.train_loss, on_epoch=True)

    def on_validation_epoch_start(self) -> None:
        self.val_loss.reset()

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        loss, logits = self._step(batch)
        self.val_loss.update(loss, weight=len(batch["labels"]))
        self.val_metrics.update(logits, batch["labels"])

    def on_validation_epoch_end(self) -> None:
        metrics = self.val_metrics.compute()
        self.val_metrics.reset()
        if not self.trainer.sanity_checking:
            self.val_acc_best.update(metrics["val/acc"])
        self.log_dict(metrics, prog_bar=True, sync_dist=False)
        self.log("val/loss", self.val_loss.compute(), prog_bar=False)
        self.log("val/acc_best", self.val_acc_best.compute() if self.val_acc_best.update_called else metrics["val/acc"],
                 prog_bar=True)

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        loss, logits = self._step(batch)
        self.test_loss.update(loss, weight=len(batch["labels"]))
        self.test_metrics.update(logits, batch["labels"])

    def on_test_epoch_end(self) -> None:
        self.log_dict(self.test_metrics.compute())
        self.log("test/loss", self.test_loss.compute())
        self.test_metrics.reset()
        self.test_loss.reset()

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        probabilities = self(batch["input_ids"], batch["attention_mask"]).float().softmax(-1)
        return {"index": batch["index"], "probabilities": probabilities}

    def configure_optimizers(self) -> dict[str, Any]:
        """AdamW-style optimizer without weight decay on biases and LayerNorm; warm-up then decay, with
        warm-up given as a fraction of all optimizer steps."""
        decay, no_decay = [], []
        for name, parameter in self.named_parameters():
            if parameter.requires_grad:
                (no_decay if name.endswith(NO_DECAY) else decay).append(parameter)
        optimizer = self.optimizer_factory(
            [{"params": decay, "weight_decay": self.hparams.weight_decay, "name": "decay"},
             {"params": no_decay, "weight_decay": 0.0, "name": "no_decay"}],
            lr=self.hparams.lr,
        )
        total = int(self.trainer.estimated_stepping_batches)
        scheduler = self.scheduler_factory(optimizer, num_warmup_steps=int(self.hparams.warmup_fraction * total),
                                           num_training_steps=total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step", "name": "lr"}}
