"""What a model is asked to predict, as one object per task shape (one class, any number of labels, or a
number): the loss, how logits become probabilities (or scores) and decisions, and the metrics of each
stage. The LightningModule and `textclf-eval` use the same object, so training and evaluation compute the
same numbers."""

from __future__ import annotations

import torch
from torch import nn
from torchmetrics import MeanAbsoluteError, MeanSquaredError, MetricCollection, PearsonCorrCoef, SpearmanCorrCoef
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
    MultilabelAccuracy,
    MultilabelF1Score,
    MultilabelPrecision,
    MultilabelRecall,
)

# precision and recall are reported for the test only
TEST_ONLY = ("precision", "recall")
TASKS = ("classification", "regression")


def stage_metrics(
    kinds: dict[str, tuple[type, str]], stage: str, num_labels: int, **options: float
) -> MetricCollection:
    """`{name: (metric class, average)}` as the metrics of one stage, named `stage/name`."""
    return MetricCollection(
        {
            name: kind(num_labels, average=average, **options)
            for name, (kind, average) in kinds.items()
            if stage == "test" or name not in TEST_ONLY
        },
        prefix=f"{stage}/",
    )


class SingleLabel:
    """One class per text: softmax, cross-entropy (optionally class-weighted), accuracy and macro F1."""

    multi_label = False
    regression = False
    # the validation metric that picks the best checkpoint (logged as val/<monitor> and val/<monitor>_best)
    monitor = "acc"

    def __init__(self, num_labels: int, class_weights: list[float] | None = None) -> None:
        self.num_labels, self.class_weights = num_labels, class_weights

    def loss(self) -> nn.Module:
        return nn.CrossEntropyLoss(weight=self._weights())

    def _weights(self) -> torch.Tensor | None:
        return torch.tensor(self.class_weights, dtype=torch.float32) if self.class_weights is not None else None

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.float().softmax(-1)

    def decisions(self, probabilities: torch.Tensor) -> torch.Tensor:
        """One-hot rows of what is predicted, as booleans [texts, labels]."""
        return nn.functional.one_hot(probabilities.argmax(-1), self.num_labels).bool()

    def metric_targets(self, labels: torch.Tensor) -> torch.Tensor:
        return labels

    def metric_inputs(self, probabilities: torch.Tensor) -> torch.Tensor:
        return probabilities

    def outputs(self, logits: torch.Tensor) -> torch.Tensor:
        """What an exported model returns: the logits themselves."""
        return logits

    def metrics(self, stage: str) -> MetricCollection:
        kinds = {
            "acc": (MulticlassAccuracy, "micro"),
            "f1": (MulticlassF1Score, "macro"),
            "precision": (MulticlassPrecision, "macro"),
            "recall": (MulticlassRecall, "macro"),
        }
        return stage_metrics(kinds, stage, self.num_labels)


class MultiLabel(SingleLabel):
    """Any number of labels per text: a sigmoid and binary cross-entropy per label (class weights are
    BCE's positive weights); a label is predicted when its probability reaches `threshold`. Accuracy is
    per label (micro); F1 both macro and micro."""

    multi_label = True

    def __init__(self, num_labels: int, class_weights: list[float] | None = None, threshold: float = 0.5) -> None:
        super().__init__(num_labels, class_weights)
        self.threshold = threshold

    def loss(self) -> nn.Module:
        return nn.BCEWithLogitsLoss(pos_weight=self._weights())

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.float().sigmoid()

    def decisions(self, probabilities: torch.Tensor) -> torch.Tensor:
        return probabilities >= self.threshold

    def metric_targets(self, labels: torch.Tensor) -> torch.Tensor:
        return labels.long()

    def metrics(self, stage: str) -> MetricCollection:
        kinds = {
            "acc": (MultilabelAccuracy, "micro"),
            "f1": (MultilabelF1Score, "macro"),
            "f1_micro": (MultilabelF1Score, "micro"),
            "precision": (MultilabelPrecision, "macro"),
            "recall": (MultilabelRecall, "macro"),
        }
        return stage_metrics(kinds, stage, self.num_labels, threshold=self.threshold)


class StandardizedMSE(nn.Module):
    """Mean squared error against standardized targets: the network learns numbers of about unit scale,
    whatever the scale of the scores (a 0-5 similarity, a price)."""

    def __init__(self, mean: float, std: float) -> None:
        super().__init__()
        self.mean, self.std = mean, std

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return nn.functional.mse_loss(logits.float().squeeze(-1), (targets.float() - self.mean) / self.std)


class Regression(SingleLabel):
    """One number per text: one output, trained on targets standardized with the training split's mean and
    standard deviation (kept in checkpoints) and mapped back to the scores' own scale for everything a user
    sees. Pearson's r picks the best checkpoint; Spearman's rho, MSE and MAE are reported as well."""

    regression = True
    monitor = "pearson"

    def __init__(self, mean: float = 0.0, std: float = 1.0) -> None:
        super().__init__(1)
        self.mean, self.std = mean, std

    def loss(self) -> nn.Module:
        return StandardizedMSE(self.mean, self.std)

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
        metrics = {
            "pearson": PearsonCorrCoef(),
            "spearman": SpearmanCorrCoef(),
            "mse": MeanSquaredError(),
            "mae": MeanAbsoluteError(),
        }
        return MetricCollection(metrics, prefix=f"{stage}/", compute_groups=False)


def make_task(
    num_labels: int,
    multi_label: bool,
    threshold: float,
    class_weights: list[float] | None,
    task: str = "classification",
    target_mean: float = 0.0,
    target_std: float = 1.0,
) -> SingleLabel:
    """The task object for a model's settings."""
    if task not in TASKS:
        raise ValueError(f"model.task must be one of {', '.join(TASKS)}, not '{task}'")
    if task == "regression":
        if multi_label or class_weights is not None:
            raise ValueError("model.task=regression takes neither data.multi_label nor model.class_weights")
        return Regression(target_mean, target_std)
    if class_weights is not None and len(class_weights) != num_labels:
        raise ValueError(f"model.class_weights has {len(class_weights)} weights for {num_labels} labels")
    return MultiLabel(num_labels, class_weights, threshold) if multi_label else SingleLabel(num_labels, class_weights)
