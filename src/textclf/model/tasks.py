"""What a model is asked to predict, as one object per task shape (one class, any number of labels, or a
number): the loss, how logits become probabilities (or scores) and decisions, and the metrics of each
stage. The LightningModule and `textclf-eval` use the same object, so training and evaluation compute the
same numbers. torchmetrics is imported where metrics are made: prediction needs none, and the import is slow."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from textclf.data.settings import TASKS
from textclf.errors import SettingError
from textclf.model.settings import REGRESSION_LOSSES, TUNED

if TYPE_CHECKING:
    from torchmetrics import MetricCollection

# precision and recall are reported for the test only
TEST_ONLY = ("precision", "recall")


def stage_metrics(
    kinds: dict[str, tuple[type, str]], stage: str, num_labels: int, **options: float
) -> MetricCollection:
    """`{name: (metric class, average)}` as the metrics of one stage, named `stage/name`."""
    from torchmetrics import MetricCollection

    return MetricCollection(
        {
            name: kind(num_labels, average=average, **options)
            for name, (kind, average) in kinds.items()
            if stage == "test" or name not in TEST_ONLY
        },
        prefix=f"{stage}/",
    )


class SingleLabel:
    """One class per text: softmax, cross-entropy (optionally class-weighted), accuracy and macro F1.
    Probabilities are those of logits / `temperature` (1 unless calibrated, calibration.py)."""

    multi_label = False
    regression = False
    temperature = 1.0
    # the validation metric that picks the best checkpoint (logged as val/<monitor> and val/<monitor>_best)
    monitor = "acc"

    def __init__(self, num_labels: int, class_weights: list[float] | None = None) -> None:
        self.num_labels, self.class_weights = num_labels, class_weights

    def loss(self) -> nn.Module:
        return nn.CrossEntropyLoss(weight=self._weights())

    def _weights(self) -> torch.Tensor | None:
        return torch.tensor(self.class_weights, dtype=torch.float32) if self.class_weights is not None else None

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return self.outputs(logits.float()).softmax(-1)

    def calibrate(self, temperature: float, thresholds: list[float] | None = None) -> None:
        """Use a fitted temperature (and, multi-label, per-label thresholds)."""
        if not temperature > 0:
            raise SettingError(f"the temperature must be a positive number, not {temperature!r}")
        if thresholds is not None:
            raise SettingError("per-label thresholds are for multi-label models")
        self.temperature = float(temperature)

    def decisions(self, probabilities: torch.Tensor) -> torch.Tensor:
        """One-hot rows of what is predicted, as booleans [texts, labels]."""
        return nn.functional.one_hot(probabilities.argmax(-1), self.num_labels).bool()

    def metric_targets(self, labels: torch.Tensor) -> torch.Tensor:
        return labels

    def metric_inputs(self, probabilities: torch.Tensor) -> torch.Tensor:
        return probabilities

    def outputs(self, logits: torch.Tensor) -> torch.Tensor:
        """What an exported model returns: the logits, divided by the temperature when calibrated."""
        return logits if self.temperature == 1.0 else logits / self.temperature

    def metrics(self, stage: str) -> MetricCollection:
        from torchmetrics.classification import (
            MulticlassAccuracy,
            MulticlassF1Score,
            MulticlassPrecision,
            MulticlassRecall,
        )

        kinds = {
            "acc": (MulticlassAccuracy, "micro"),
            "f1": (MulticlassF1Score, "macro"),
            "precision": (MulticlassPrecision, "macro"),
            "recall": (MulticlassRecall, "macro"),
        }
        return stage_metrics(kinds, stage, self.num_labels)


class MultiLabel(SingleLabel):
    """Any number of labels per text: a sigmoid and binary cross-entropy per label (class weights are
    BCE's positive weights); a label is predicted when its probability reaches its threshold: `threshold`
    for every label, or with `threshold="tuned"` one per label, tuned on validation after training (0.5
    until then). Accuracy is per label (micro); F1 both macro and micro, all of the decisions."""

    multi_label = True

    def __init__(self, num_labels: int, class_weights: list[float] | None = None, threshold: float | str = 0.5) -> None:
        super().__init__(num_labels, class_weights)
        self.threshold = threshold
        self.thresholds = torch.full((num_labels,), 0.5 if threshold == TUNED else float(threshold))

    def loss(self) -> nn.Module:
        return nn.BCEWithLogitsLoss(pos_weight=self._weights())

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return self.outputs(logits.float()).sigmoid()

    def calibrate(self, temperature: float, thresholds: list[float] | None = None) -> None:
        super().calibrate(temperature)
        if thresholds is not None:
            if len(thresholds) != self.num_labels or not all(0 < float(t) < 1 for t in thresholds):
                raise SettingError(f"thresholds must be {self.num_labels} numbers between 0 and 1, not {thresholds}")
            self.thresholds = torch.tensor([float(t) for t in thresholds])

    def decisions(self, probabilities: torch.Tensor) -> torch.Tensor:
        return probabilities >= self.thresholds.to(probabilities.device)

    def metric_inputs(self, probabilities: torch.Tensor) -> torch.Tensor:
        """The decisions as 0/1 (the metrics' own threshold, 0.5, keeps them): metrics follow the
        per-label thresholds."""
        return self.decisions(probabilities).float()

    def metric_targets(self, labels: torch.Tensor) -> torch.Tensor:
        return labels.long()

    def metrics(self, stage: str) -> MetricCollection:
        from torchmetrics.classification import (
            MultilabelAccuracy,
            MultilabelF1Score,
            MultilabelPrecision,
            MultilabelRecall,
        )

        kinds = {
            "acc": (MultilabelAccuracy, "micro"),
            "f1": (MultilabelF1Score, "macro"),
            "f1_micro": (MultilabelF1Score, "micro"),
            "precision": (MultilabelPrecision, "macro"),
            "recall": (MultilabelRecall, "macro"),
        }
        return stage_metrics(kinds, stage, self.num_labels, threshold=0.5)


class StandardizedLoss(nn.Module):
    """Squared error (`mse`) or Huber loss (`huber`: squared within one standard deviation, linear beyond,
    so a few wild scores pull less) against standardized targets: the network learns numbers of about unit
    scale, whatever the scale of the scores (a 0-5 similarity, a price)."""

    def __init__(self, mean: float, std: float, kind: str = "mse") -> None:
        super().__init__()
        self.mean, self.std = mean, std
        self.error = nn.functional.mse_loss if kind == "mse" else nn.functional.huber_loss

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.error(logits.float().squeeze(-1), (targets.float() - self.mean) / self.std)


class Regression(SingleLabel):
    """One number per text: one output, trained on targets standardized with the training split's mean and
    standard deviation (kept in checkpoints) and mapped back to the scores' own scale for everything a user
    sees. Pearson's r picks the best checkpoint; Spearman's rho, MSE and MAE are reported as well."""

    regression = True
    monitor = "pearson"

    def __init__(self, mean: float = 0.0, std: float = 1.0, loss: str = "mse") -> None:
        super().__init__(1)
        self.mean, self.std, self.loss_kind = mean, std, loss

    def loss(self) -> nn.Module:
        return StandardizedLoss(self.mean, self.std, self.loss_kind)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """The scores, [texts, 1], on the targets' scale (the name keeps one code path for all tasks)."""
        return logits.float() * self.std + self.mean

    def outputs(self, logits: torch.Tensor) -> torch.Tensor:
        return self.probabilities(logits)

    def metric_inputs(self, probabilities: torch.Tensor) -> torch.Tensor:
        return probabilities.squeeze(-1)  # the regression metrics take one score per text

    def decisions(self, probabilities: torch.Tensor) -> torch.Tensor:
        raise TypeError("a regression model predicts scores, not labels")

    def metrics(self, stage: str) -> MetricCollection:
        from torchmetrics import (
            MeanAbsoluteError,
            MeanSquaredError,
            MetricCollection,
            PearsonCorrCoef,
            SpearmanCorrCoef,
        )

        metrics = {
            "pearson": PearsonCorrCoef(),
            "spearman": SpearmanCorrCoef(),
            "mse": MeanSquaredError(),
            "mae": MeanAbsoluteError(),
        }
        return MetricCollection(metrics, prefix=f"{stage}/", compute_groups=False)


def check_task_settings(threshold: Any, calibrate: Any, multi_label: bool, task: str, regression_loss: Any) -> None:
    """`model.threshold`: a number in (0, 1), or `tuned` (multi-label only); `model.calibrate`: a boolean,
    refused for regression; `model.regression_loss`: mse or huber, for regression. One-line errors."""
    if threshold == TUNED:
        if not multi_label:
            raise SettingError("model.threshold=tuned tunes one threshold per label: it needs data.multi_label=true")
    elif isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold < 1:
        raise SettingError(f"model.threshold must be a number between 0 and 1 (exclusive) or tuned, not {threshold!r}")
    if not isinstance(calibrate, bool):
        raise SettingError(f"model.calibrate must be true or false, not {calibrate!r}")
    if calibrate and task == "regression":
        raise SettingError("model.calibrate=true scales class probabilities: a regression model has none")
    if regression_loss not in REGRESSION_LOSSES:
        losses = ", ".join(REGRESSION_LOSSES)
        raise SettingError(f"model.regression_loss must be one of {losses}, not {regression_loss!r}")
    if regression_loss != "mse" and task != "regression":
        raise SettingError(f"model.regression_loss={regression_loss} is for data.task=regression")


def make_task(
    num_labels: int,
    multi_label: bool = False,
    threshold: float | str = 0.5,
    class_weights: list[float] | None = None,
    task: str = "classification",
    target_mean: float = 0.0,
    target_std: float = 1.0,
    calibrate: bool = False,
    regression_loss: str = "mse",
) -> SingleLabel:
    """The task object for a model's settings."""
    if task not in TASKS:
        raise ValueError(f"model.task must be one of {', '.join(TASKS)}, not '{task}'")
    check_task_settings(threshold, calibrate, multi_label, task, regression_loss)
    if task == "regression":
        if multi_label or class_weights is not None:
            raise ValueError("model.task=regression takes neither data.multi_label nor model.class_weights")
        return Regression(target_mean, target_std, regression_loss)
    if class_weights is not None and len(class_weights) != num_labels:
        raise ValueError(f"model.class_weights has {len(class_weights)} weights for {num_labels} labels")
    return MultiLabel(num_labels, class_weights, threshold) if multi_label else SingleLabel(num_labels, class_weights)


def task_of(settings: Mapping[str, Any]) -> SingleLabel:
    """The task of a model's settings (the LightningModule's hyper-parameters, or a checkpoint's) with its
    fitted temperature and thresholds; a setting that an older checkpoint lacks takes its default."""
    names = set(inspect.signature(make_task).parameters) - {"num_labels"}
    task = make_task(len(settings["id2label"]), **{name: settings[name] for name in names if name in settings})
    task.calibrate(settings.get("temperature", 1.0), settings.get("thresholds"))
    return task
