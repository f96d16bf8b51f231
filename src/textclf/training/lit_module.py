"""The LightningModule: it receives the classifier network and owns what training needs around it, the
loss and metrics of the task, and the optimizer and schedule (as lightning-hydra-template injects its net)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torchmetrics import MaxMetric, MeanMetric, Metric, MetricCollection
from transformers import PreTrainedTokenizerBase, get_linear_schedule_with_warmup

from textclf.data.tokenization import tokenizer_files, tokenizer_from_files
from textclf.data.windows import aggregate
from textclf.model import speedups
from textclf.model.loading import arguments_of, load_trained
from textclf.model.network import ClassifierNetwork
from textclf.model.tasks import task_of

# AdamW with its fused kernel: one pass over all parameters per step instead of one per tensor
ADAMW = functools.partial(torch.optim.AdamW, fused=True)
NO_DECAY = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight")


def parameter_groups(
    named_parameters: Iterable[tuple[str, torch.nn.Parameter]], weight_decay: float
) -> list[dict[str, Any]]:
    """The trainable parameters in two optimizer groups, so that biases and norm weights (`NO_DECAY`) are
    not decayed, as the usual fine-tuning recipe has it."""
    decay, no_decay = [], []
    for name, parameter in named_parameters:
        if parameter.requires_grad:
            (no_decay if name.endswith(NO_DECAY) else decay).append(parameter)
    return [
        {"params": decay, "weight_decay": weight_decay, "name": "decay"},
        {"params": no_decay, "weight_decay": 0.0, "name": "no_decay"},
    ]


def without_frozen_weights(state_dict: dict[str, Any], net: ClassifierNetwork) -> dict[str, Any]:
    """The state dict less the network's frozen weights: a LoRA checkpoint keeps what trained, and the
    frozen base comes from `pretrained` again when it is loaded."""
    trained = {f"net.{name}" for name, parameter in net.named_parameters() if parameter.requires_grad}
    return {key: value for key, value in state_dict.items() if not key.startswith("net.") or key in trained}


def window_aggregation(trainer: L.Trainer) -> str:
    """How the windows of a long text are combined: the data module's setting (data.window_aggregation)."""
    datamodule = getattr(trainer, "datamodule", None)
    return getattr(datamodule, "hparams", {}).get("window_aggregation", "mean")


def computed_and_reset(metric: Metric | MetricCollection) -> Any:
    """A metric's value over the epoch, the metric then reset: torchmetrics would go on accumulating into
    the next epoch."""
    value = metric.compute()
    metric.reset()
    return value


def best_so_far(best: MaxMetric, value: torch.Tensor, counts: bool) -> torch.Tensor:
    """The best monitored value so far, with this epoch's when it `counts` (not the sanity check's few
    batches); this epoch's alone while none has counted yet."""
    if counts:
        best.update(value)
    return best.compute() if best.update_called else value


class ClassifierLitModule(L.LightningModule):
    """Fine-tunes a `ClassifierNetwork` for single- or multi-label text classification, or regression.

    A checkpoint carries everything needed to use the model elsewhere: `id2label` and the settings in its
    hyper-parameters, the network's spec (`build_network`'s arguments, with the encoder's config) and the
    tokenizer's files, so the checkpoint alone rebuilds it (`textclf.model.loading.load_trained` for inference,
    without Lightning; `load_lit_module` this module around it). Defaults are those of
    `conf/model/default.yaml`. `temperature` and `thresholds` are fitted on validation after training
    (calibration.py) and stored in the best checkpoint's hyper-parameters.
    """

    def __init__(
        self,
        net: ClassifierNetwork,
        id2label: dict[int, str],
        multi_label: bool = False,
        threshold: float | str = 0.5,
        class_weights: list[float] | None = None,
        task: str = "classification",
        target_mean: float = 0.0,
        target_std: float = 1.0,
        calibrate: bool = False,
        regression_loss: str = "mse",
        temperature: float = 1.0,
        thresholds: list[float] | None = None,
        lr: float = 1e-4,
        weight_decay: float = 0.01,
        warmup_fraction: float = 0.1,
        optimizer: Callable[..., torch.optim.Optimizer] = ADAMW,
        scheduler: Callable[..., Any] = get_linear_schedule_with_warmup,
        compile: bool = False,
        tokenizer: PreTrainedTokenizerBase | None = None,
    ) -> None:
        super().__init__()
        # plain Python values: checkpoints are read back with weights_only, which refuses OmegaConf objects
        id2label = {int(index): str(name) for index, name in id2label.items()}
        class_weights = [float(weight) for weight in class_weights] if class_weights is not None else None
        # the network's spec and the tokenizer travel in the checkpoint on their own (on_save_checkpoint)
        self.save_hyperparameters(ignore=["net", "tokenizer", "optimizer", "scheduler"])
        self.net, self.tokenizer = net, tokenizer
        # a LoRA checkpoint holds only what was trained (on_save_checkpoint): the rest comes from `pretrained`
        self.strict_loading = net.spec.get("peft") is None
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.task = task_of(self.hparams)  # from the settings as saved, as the classifier of a checkpoint
        self.loss = self.task.loss()
        self.data_hparams: dict[str, Any] = {}  # the data settings it was trained with, from a checkpoint
        self.train_loss, self.val_loss, self.test_loss = MeanMetric(), MeanMetric(), MeanMetric()
        self.val_metrics, self.test_metrics = self.task.metrics("val"), self.task.metrics("test")
        self.val_acc_best = MaxMetric()  # of the task's monitored metric (the name is kept by checkpoints)
        # kept in checkpoints, so a resumed run knows its best and its epoch's running loss
        self.val_acc_best.persistent(True)
        self.train_loss.persistent(True)

    @property
    def id2label(self) -> dict[int, str]:
        return self.hparams.id2label

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logits, one row per text (or pair of texts)."""
        return self.net(input_ids, attention_mask, token_type_ids)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return self.task.probabilities(logits)

    def on_fit_start(self) -> None:
        if self.net.fast_dropout and self.device.type == "cpu":
            speedups.use_fast_dropout(self.net)
        if self.hparams.compile:  # in place: the state dict keeps its keys
            self.net.encoder.compile(dynamic=True)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["network"] = self.net.spec
        if not self.strict_loading:  # LoRA: the trained weights only, not the frozen base
            checkpoint["state_dict"] = without_frozen_weights(checkpoint["state_dict"], self.net)
        if self.tokenizer is not None:
            checkpoint["tokenizer_files"] = tokenizer_files(self.tokenizer)

    def set_calibration(self, temperature: float, thresholds: list[float] | None) -> None:
        """A fitted temperature and per-label thresholds: used by the task and saved with the hyper-parameters."""
        self.task.calibrate(temperature, thresholds)
        self.hparams.temperature = float(temperature)
        self.hparams.thresholds = [float(t) for t in thresholds] if thresholds is not None else None

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.data_hparams = dict(checkpoint.get("datamodule_hyper_parameters", {}))
        hparams = checkpoint.get("hyper_parameters", {})  # older checkpoints: temperature 1, fixed threshold
        self.set_calibration(hparams.get("temperature", 1.0), hparams.get("thresholds"))
        if "tokenizer_files" in checkpoint:
            self.tokenizer = tokenizer_from_files(checkpoint["tokenizer_files"])

    def _step(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"))
        if "window_text" in batch:  # windows of whole texts (evaluation): one row of logits per text
            logits = aggregate(logits, batch["window_text"], len(batch["labels"]), window_aggregation(self.trainer))
        return self.loss(logits.float(), batch["labels"]), logits

    def on_train_batch_start(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        if batch_idx == 0:  # a new epoch; also after resuming from a checkpoint saved at an epoch's end
            self.train_loss.reset()

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, _ = self._step(batch)
        self.train_loss(loss.detach())
        batch_size = len(batch["labels"])
        self.log("train/loss", loss.detach(), on_step=True, on_epoch=False, prog_bar=True, batch_size=batch_size)
        return loss

    def on_train_epoch_end(self) -> None:
        self.log("train/loss_epoch", self.train_loss, on_epoch=True)

    def _evaluation_step(self, stage: str, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Updates the stage's loss and metrics; returns the probabilities, for callbacks that picture
        them (pictures.py)."""
        loss, logits = self._step(batch)
        getattr(self, f"{stage}_loss").update(loss, weight=len(batch["labels"]))
        probabilities = self.probabilities(logits)
        inputs, targets = self.task.metric_inputs(probabilities), self.task.metric_targets(batch["labels"])
        getattr(self, f"{stage}_metrics").update(inputs, targets)
        return probabilities

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._evaluation_step("val", batch)

    def on_validation_epoch_end(self) -> None:
        metrics = computed_and_reset(self.val_metrics)
        monitored = f"val/{self.task.monitor}"  # val/acc, or val/pearson for regression
        best = best_so_far(self.val_acc_best, metrics[monitored], counts=not self.trainer.sanity_checking)
        self.log_dict(metrics, prog_bar=True)
        self.log("val/loss", computed_and_reset(self.val_loss))
        self.log(f"{monitored}_best", best, prog_bar=True)

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._evaluation_step("test", batch)

    def on_test_epoch_end(self) -> None:
        self.log_dict(computed_and_reset(self.test_metrics))
        self.log("test/loss", computed_and_reset(self.test_loss))

    def configure_optimizers(self) -> dict[str, Any]:
        """AdamW-style optimizer without weight decay on biases and LayerNorm; warm-up then decay, with
        warm-up given as a fraction of all optimizer steps."""
        groups = parameter_groups(self.named_parameters(), self.hparams.weight_decay)
        optimizer = self.optimizer_factory(groups, lr=self.hparams.lr)
        total = int(self.trainer.estimated_stepping_batches)
        warmup = int(self.hparams.warmup_fraction * total)
        scheduler = self.scheduler_factory(optimizer, num_warmup_steps=warmup, num_training_steps=total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step", "name": "lr"}}


def load_lit_module(path: str | Path, map_location: str | torch.device = "cpu") -> ClassifierLitModule:
    """The LightningModule around the classifier a checkpoint holds (`load_trained`), in eval mode."""
    trained = load_trained(path, map_location)
    module = ClassifierLitModule(
        trained.net, **arguments_of(ClassifierLitModule, trained.hparams), tokenizer=trained.tokenizer
    )
    module.data_hparams = trained.data_hparams
    return module.to(map_location).eval()
