"""The classifier: a Hugging Face encoder, a pooled representation and a dropout + linear head."""

from __future__ import annotations

import functools
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torch import nn
from torchmetrics import MaxMetric, MeanMetric, MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
    MultilabelAccuracy,
    MultilabelF1Score,
    MultilabelPrecision,
    MultilabelRecall,
)
from transformers import (
    AutoConfig,
    AutoModel,
    AutoTokenizer,
    PreTrainedTokenizerBase,
    get_linear_schedule_with_warmup,
)

from textclf import speedups
from textclf.plots import confusion_figure
from textclf.pretrained import resolve_pretrained

NO_DECAY = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight")
# pooler: the encoder's own pooler over [CLS] (BERT: dense + tanh), the classic BERT recipe and exactly
# what AutoModelForSequenceClassification computes; cls: the raw [CLS] state; mean: the mean token state.
POOLINGS = ("pooler", "cls", "mean")
# what of the embedding block stays as pretrained: nothing, the word matrix (half of MiniLM's weights), or
# all of it (also position and token-type embeddings and their LayerNorm: then layer 0 needs no input gradient)
FROZEN_EMBEDDINGS = ("none", "word", "all")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and is meant to be shown as is."""


def stage_metrics(num_labels: int, stage: str, multi_label: bool, threshold: float = 0.5) -> MetricCollection:
    """Accuracy plus macro F1 (and, for test, macro precision and recall); multi-label adds micro F1."""
    if multi_label:
        kinds = {"acc": (MultilabelAccuracy, "micro"), "f1": (MultilabelF1Score, "macro"),
                 "f1_micro": (MultilabelF1Score, "micro"), "precision": (MultilabelPrecision, "macro"),
                 "recall": (MultilabelRecall, "macro")}
        build = lambda kind, average: kind(num_labels, threshold=threshold, average=average)  # noqa: E731
    else:
        kinds = {"acc": (MulticlassAccuracy, "micro"), "f1": (MulticlassF1Score, "macro"),
                 "precision": (MulticlassPrecision, "macro"), "recall": (MulticlassRecall, "macro")}
        build = lambda kind, average: kind(num_labels, average=average)  # noqa: E731
    if stage != "test":
        kinds = {name: kind for name, kind in kinds.items() if name not in ("precision", "recall")}
    return MetricCollection({name: build(*kind) for name, kind in kinds.items()}, prefix=f"{stage}/")


def tokenizer_files(tokenizer: PreTrainedTokenizerBase) -> dict[str, str]:
    """The tokenizer as {file name: text}, to travel inside a checkpoint as plain strings."""
    with tempfile.TemporaryDirectory() as directory:
        tokenizer.save_pretrained(directory)
        return {path.name: path.read_text(encoding="utf-8") for path in Path(directory).iterdir() if path.is_file()}


def tokenizer_from_files(files: dict[str, str]) -> PreTrainedTokenizerBase:
    with tempfile.TemporaryDirectory() as directory:
        for name, text in files.items():
            (Path(directory) / Path(name).name).write_text(text, encoding="utf-8")
        return AutoTokenizer.from_pretrained(directory)


class TextClassifier(L.LightningModule):
    """A BERT-family encoder fine-tuned for single- or multi-label text classification.

    The checkpoint carries everything needed to use it elsewhere: the encoder's config and `id2label` in
    its hyper-parameters, and the tokenizer's files, so a checkpoint alone rebuilds the model (no
    download) and names its predictions.
    """

    def __init__(
        self,
        id2label: dict[int, str],
        pretrained: str = "all-MiniLM-L6-v2",
        pooling: str = "pooler",
        dropout: float = 0.1,
        lr: float = 5e-5,
        weight_decay: float = 0.01,
        warmup_fraction: float = 0.1,
        multi_label: bool = False,
        threshold: float = 0.5,
        class_weights: list[float] | None = None,
        optimizer: functools.partial | None = None,
        scheduler: functools.partial | None = None,
        attention_dropout: float | None = None,
        hidden_dropout: float | None = None,
        freeze_embeddings: str = "none",
        fast_dropout: bool = True,
        skip_unused_tokens: bool = True,
        bf16_residual: bool = True,
        compile: bool = False,
        attn_implementation: str = "auto",
        trust_remote_code: bool = False,
        encoder_config: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        for key, value, allowed in (("pooling", pooling, POOLINGS),
                                    ("freeze_embeddings", freeze_embeddings, FROZEN_EMBEDDINGS)):
            if value not in allowed:
                raise ValueError(f"model.{key} must be one of {', '.join(allowed)}, not '{value}'")
        id2label = {int(index): str(name) for index, name in id2label.items()}
        if class_weights is not None and len(class_weights) != len(id2label):
            raise ValueError(f"model.class_weights has {len(class_weights)} weights for {len(id2label)} labels")
        self.tokenizer: PreTrainedTokenizerBase | None = None
        attention = self.attention = speedups.resolve_attention(attn_implementation, training=True)
        if encoder_config is None:  # fresh run: pretrained weights and their tokenizer
            location = resolve_pretrained(pretrained)
            config = AutoConfig.from_pretrained(location, trust_remote_code=trust_remote_code)
            for key, value in (("attention_probs_dropout_prob", attention_dropout),
                               ("hidden_dropout_prob", hidden_dropout)):
                if value is not None and hasattr(config, key):
                    setattr(config, key, value)
            # read into memory, not memory-mapped: every trained weight is written at the first optimizer
            # step, and copy-on-write of a mapped file made that step 0.2-0.3 s slower (README "Performance")
            self.encoder = AutoModel.from_pretrained(location, config=config, attn_implementation=attention,
                                                     trust_remote_code=trust_remote_code, disable_mmap=True)
            self.tokenizer = AutoTokenizer.from_pretrained(location, trust_remote_code=trust_remote_code)
            encoder_config = self.encoder.config.to_dict()
        else:  # from a checkpoint: the architecture only; weights and tokenizer come from the checkpoint
            config = AutoConfig.for_model(**encoder_config)
            self.encoder = AutoModel.from_config(config, attn_implementation=attention)
        if pooling == "pooler" and getattr(self.encoder, "pooler", None) is None:
            raise ValueError(f"model.pooling=pooler: '{pretrained}' has no pooler; use cls or mean")
        if pooling != "pooler" and getattr(self.encoder, "pooler", None) is not None:
            self.encoder.pooler = None  # unused by the head; unused parameters would break DDP
        self.data_hparams: dict[str, Any] = {}  # the data settings it was trained with, from a checkpoint
        # transformers 5 returns from_pretrained models in eval mode (dropout off) and Lightning 2.6 keeps
        # each submodule's mode: switch the encoder to train mode or it would fine-tune without dropout.
        self.encoder.train()
        if skip_unused_tokens and pooling != "mean":
            speedups.skip_unused_tokens(self.encoder)
        if bf16_residual:
            speedups.keep_residual_in_bf16(self.encoder)
        if freeze_embeddings == "word":
            self.encoder.get_input_embeddings().weight.requires_grad_(False)
        elif freeze_embeddings == "all":
            embeddings = getattr(self.encoder, "embeddings", None) or self.encoder.get_input_embeddings()
            embeddings.requires_grad_(False)
        self.save_hyperparameters(
            {"id2label": id2label, "pretrained": pretrained, "pooling": pooling, "dropout": dropout, "lr": lr,
             "weight_decay": weight_decay, "warmup_fraction": warmup_fraction, "multi_label": multi_label,
             "threshold": threshold, "class_weights": class_weights, "attention_dropout": attention_dropout,
             "hidden_dropout": hidden_dropout, "freeze_embeddings": freeze_embeddings, "fast_dropout": fast_dropout,
             "skip_unused_tokens": skip_unused_tokens, "bf16_residual": bf16_residual, "compile": compile,
             "attn_implementation": attn_implementation, "trust_remote_code": trust_remote_code,
             "encoder_config": encoder_config}
        )
        self.optimizer_factory = optimizer or torch.optim.AdamW
        self.scheduler_factory = scheduler or get_linear_schedule_with_warmup
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.encoder.config.hidden_size, len(id2label)))
        weights = torch.tensor(class_weights, dtype=torch.float32) if class_weights is not None else None
        self.loss = nn.BCEWithLogitsLoss(pos_weight=weights) if multi_label else nn.CrossEntropyLoss(weight=weights)
        self.train_loss = MeanMetric()
        self.val_metrics = stage_metrics(len(id2label), "val", multi_label, threshold)
        self.test_metrics = stage_metrics(len(id2label), "test", multi_label, threshold)
        self.val_loss, self.test_loss = MeanMetric(), MeanMetric()
        self.val_acc_best = MaxMetric()
        # kept in checkpoints, so a resumed run knows its best and its epoch's running loss
        self.val_acc_best.persistent(True)
        self.train_loss.persistent(True)
        if not multi_label:  # pictured in TensorBoard after each validation and the test
            self.val_confusion = MulticlassConfusionMatrix(len(id2label))
            self.test_confusion = MulticlassConfusionMatrix(len(id2label))

    @property
    def id2label(self) -> dict[int, str]:
        return self.hparams.id2label

    @classmethod
    def from_checkpoint(cls, path: str | Path, map_location: str | torch.device = "cpu") -> TextClassifier:
        """Load a checkpoint safely (`weights_only`: no pickled code runs), with a one-line error for a
        file that is missing, truncated, corrupted or not a textclf checkpoint."""
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"{path}: checkpoint not found")
        if not zipfile.is_zipfile(path):  # every checkpoint torch.save has written since PyTorch 1.6
            raise CheckpointError(f"{path}: not a readable checkpoint (truncated, corrupted or not a PyTorch file)")
        try:
            model = cls.load_from_checkpoint(path, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError as error:
            reason = str(error).strip().splitlines()[0] if "weights_only" not in str(error) else \
                "it holds pickled objects that are not plain data (refused: loading them could run code)"
            raise CheckpointError(f"{path}: refused: {reason}") from None
        except (KeyError, TypeError) as error:
            raise CheckpointError(f"{path}: not a textclf checkpoint (missing {error})") from None
        except Exception as error:  # the unpickler fails in many ways on a damaged file
            detail = str(error).strip().split(". ")[0] if str(error).strip() else type(error).__name__
            raise CheckpointError(f"{path}: not a readable checkpoint (truncated or corrupted: {detail})") from None
        return model.eval()

    def on_fit_start(self) -> None:
        if self.hparams.fast_dropout and self.device.type == "cpu":
            speedups.use_fast_dropout(self)
        if self.hparams.compile:  # in place: the state dict keeps its keys
            self.encoder.compile(dynamic=True)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.tokenizer is not None:
            checkpoint["tokenizer_files"] = tokenizer_files(self.tokenizer)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.data_hparams = dict(checkpoint.get("datamodule_hyper_parameters", {}))
        if "tokenizer_files" in checkpoint:
            self.tokenizer = tokenizer_from_files(checkpoint["tokenizer_files"])

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Logits, one row per text."""
        attention = speedups.resolve_attention(self.hparams.attn_implementation, self.training)
        if attention != self.attention:
            self.encoder.set_attn_implementation(attention)
            self.attention = attention
        outputs = self.encoder(input_ids=input_ids, attention_mask=attention_mask)
        hidden = outputs.last_hidden_state
        if self.hparams.pooling == "pooler":
            pooled = outputs.pooler_output
        elif self.hparams.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        return self.head(pooled)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Softmax over classes, or an independent sigmoid per label for multi-label models."""
        return logits.float().sigmoid() if self.hparams.multi_label else logits.float().softmax(-1)

    def _step(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self(batch["input_ids"], batch["attention_mask"])
        return self.loss(logits.float(), batch["labels"]), logits

    def _update(self, stage: str, logits: torch.Tensor, labels: torch.Tensor) -> None:
        probabilities = self.probabilities(logits)
        getattr(self, f"{stage}_metrics").update(probabilities, labels.long() if self.hparams.multi_label else labels)
        if not self.hparams.multi_label:
            getattr(self, f"{stage}_confusion").update(probabilities.argmax(-1), labels)

    def _log_confusion(self, stage: str) -> None:
        """Computed on every rank (it syncs), drawn once, into TensorBoard."""
        if self.hparams.multi_label:
            return
        confusion = getattr(self, f"{stage}_confusion")
        matrix = confusion.compute().cpu().numpy()
        confusion.reset()
        if self.trainer.sanity_checking or not self.trainer.is_global_zero:
            return
        for logger in self.loggers:
            if isinstance(logger, TensorBoardLogger):
                figure = confusion_figure(matrix, list(self.id2label.values()))
                logger.experiment.add_figure(f"{stage}/confusion_matrix", figure, global_step=self.global_step)

    def on_train_batch_start(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        if batch_idx == 0:  # a new epoch; also after resuming from a checkpoint saved at an epoch's end
            self.train_loss.reset()

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, _ = self._step(batch)
        self.train_loss(loss.detach())
        self.log("train/loss", loss.detach(), on_step=True, on_epoch=False, prog_bar=True, batch_size=len(batch["labels"]))
        return loss

    def on_train_epoch_end(self) -> None:
        self.log("train/loss_epoch", self.train_loss, on_epoch=True)

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        loss, logits = self._step(batch)
        self.val_loss.update(loss, weight=len(batch["labels"]))
        self._update("val", logits, batch["labels"])

    def on_validation_epoch_end(self) -> None:
        metrics = self.val_metrics.compute()
        self.val_metrics.reset()
        if not self.trainer.sanity_checking:
            self.val_acc_best.update(metrics["val/acc"])
        self.log_dict(metrics, prog_bar=True)
        self.log("val/loss", self.val_loss.compute())
        self.val_loss.reset()
        self.log("val/acc_best", self.val_acc_best.compute() if self.val_acc_best.update_called else metrics["val/acc"],
                 prog_bar=True)
        self._log_confusion("val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """Returns the probabilities, for callbacks that report on single examples (monitoring.py)."""
        loss, logits = self._step(batch)
        self.test_loss.update(loss, weight=len(batch["labels"]))
        self._update("test", logits, batch["labels"])
        return self.probabilities(logits)

    def on_test_epoch_end(self) -> None:
        self.log_dict(self.test_metrics.compute())
        self.log("test/loss", self.test_loss.compute())
        self.test_metrics.reset()
        self.test_loss.reset()
        self._log_confusion("test")

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
