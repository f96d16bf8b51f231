"""Fitted on the validation split after training: a temperature that calibrates the probabilities
(`model.calibrate=true`) and, for multi-label models, one F1-maximising threshold per label
(`model.threshold=tuned`). Both are stored in the best checkpoint's hyper-parameters, so `textclf-eval`,
`textclf-predict` and `textclf-export` use them; a checkpoint without them has temperature 1 and the
fixed threshold. Also the expected calibration error (ECE) and the bins of a reliability diagram."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn
from torchmetrics.functional.classification import binary_calibration_error, multiclass_calibration_error

BINS = 15  # of the ECE and the reliability diagram: equal widths over [0, 1]
TEMPERATURES = (1e-2, 1e2)  # the fitted temperature is kept inside these


def raw_probabilities(logits: torch.Tensor, multi_label: bool, temperature: float = 1.0) -> torch.Tensor:
    """Softmax (or sigmoid per label) of logits / temperature."""
    scaled = logits.double() / temperature
    return (scaled.sigmoid() if multi_label else scaled.softmax(-1)).float()


def nll(logits: torch.Tensor, targets: torch.Tensor, multi_label: bool) -> torch.Tensor:
    """Mean negative log-likelihood: cross-entropy, or binary cross-entropy per label."""
    if multi_label:
        return nn.functional.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype))
    return nn.functional.cross_entropy(logits, targets.long())


def fit_temperature(logits: torch.Tensor, targets: torch.Tensor, multi_label: bool) -> float:
    """The temperature T > 0 that minimises the NLL of logits / T (L-BFGS on log T; the NLL is convex in
    1/T, so there is one minimum). Dividing by T keeps every logit's order: the argmax does not change."""
    logits = logits.detach().double()
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=1.0, max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = nll(logits / log_t.exp(), targets, multi_label)
        loss.backward()
        return loss

    optimizer.step(closure)
    temperature = float(log_t.detach().exp())
    if not math.isfinite(temperature):
        return 1.0
    return min(max(temperature, TEMPERATURES[0]), TEMPERATURES[1])


def expected_calibration_error(probabilities: torch.Tensor, targets: torch.Tensor, multi_label: bool) -> float:
    """ECE over 15 equal-width bins (torchmetrics): of the top label's probability for single-label models,
    of every (text, label) probability for multi-label ones."""
    probabilities = probabilities.float()
    if multi_label:
        return float(binary_calibration_error(probabilities.flatten(), targets.long().flatten(), n_bins=BINS))
    return float(multiclass_calibration_error(probabilities, targets.long(), probabilities.shape[1], n_bins=BINS))


def reliability_bins(probabilities: np.ndarray, targets: np.ndarray, multi_label: bool) -> dict[str, np.ndarray]:
    """Per bin of confidence (as the ECE bins it): the mean confidence, the share correct and the count."""
    if multi_label:
        confidence, correct = probabilities.ravel(), targets.astype(bool).ravel()
    else:
        confidence, correct = probabilities.max(1), probabilities.argmax(1) == targets
    index = np.clip(np.ceil(confidence * BINS).astype(np.int64) - 1, 0, BINS - 1)
    count = np.bincount(index, minlength=BINS)
    shown = np.maximum(count, 1)
    return {
        "confidence": np.bincount(index, confidence, minlength=BINS) / shown,
        "accuracy": np.bincount(index, correct.astype(np.float64), minlength=BINS) / shown,
        "count": count,
    }


def tune_thresholds(probabilities: torch.Tensor, targets: torch.Tensor, default: float = 0.5) -> list[float]:
    """Per label, the threshold that maximises its F1 on these examples: the labels are predicted for the k
    most probable texts, with k chosen over every cut between two distinct probabilities, and the threshold
    is halfway between the last text in and the first one out. A label without a positive example keeps
    `default`."""
    thresholds = []
    for column, truth in zip(probabilities.double().T, targets.double().T):
        positives = float(truth.sum())
        if positives == 0:
            thresholds.append(default)
            continue
        order = torch.argsort(column, descending=True, stable=True)
        sorted_p, sorted_y = column[order], truth[order]
        true_positive = sorted_y.cumsum(0)
        predicted = torch.arange(1, len(column) + 1, dtype=torch.float64)
        f1 = 2 * true_positive / (predicted + positives)
        # a cut is possible only where the next probability is lower (equal ones are in or out together)
        cuttable = torch.ones_like(f1, dtype=torch.bool)
        cuttable[:-1] = sorted_p[:-1] > sorted_p[1:]
        k = int(torch.where(cuttable, f1, torch.full_like(f1, -1.0)).argmax())
        below = float(sorted_p[k + 1]) if k + 1 < len(sorted_p) else 0.0
        thresholds.append((float(sorted_p[k]) + below) / 2)
    return thresholds


def f1_scores(decisions: torch.Tensor, targets: torch.Tensor) -> tuple[float, float]:
    """Macro and micro F1 of multi-label decisions (as torchmetrics: a label never predicted nor present
    scores 0 in the macro mean)."""
    decisions, targets = decisions.bool(), targets.bool()
    true_positive = (decisions & targets).sum(0).double()
    wrong = (decisions ^ targets).sum(0).double()
    per_label = 2 * true_positive / torch.clamp(2 * true_positive + wrong, min=1)
    micro = 2 * true_positive.sum() / torch.clamp(2 * true_positive.sum() + wrong.sum(), min=1)
    return float(per_label.mean()), float(micro)


def calibrate(
    logits: torch.Tensor, targets: torch.Tensor, multi_label: bool, temperature: bool, thresholds: bool
) -> dict[str, Any]:
    """Fit a temperature (if `temperature`), then per-label thresholds on the calibrated probabilities (if
    `thresholds`), from validation logits and targets. Returns `temperature`, `thresholds` (None when not
    tuned) and the validation numbers before and after: `val/ece`, `val/ece_calibrated`, and for tuned
    thresholds the F1 at 0.5 (`val/f1_untuned`, `val/f1_micro_untuned`)."""
    fitted = fit_temperature(logits, targets, multi_label) if temperature else 1.0
    report: dict[str, Any] = {"temperature": fitted, "thresholds": None}
    report["val/ece"] = expected_calibration_error(raw_probabilities(logits, multi_label), targets, multi_label)
    calibrated = raw_probabilities(logits, multi_label, fitted)
    if temperature:
        report["val/ece_calibrated"] = expected_calibration_error(calibrated, targets, multi_label)
    if thresholds:
        report["thresholds"] = tune_thresholds(calibrated, targets)
        tuned = calibrated >= torch.tensor(report["thresholds"], dtype=calibrated.dtype)
        report["val/f1_untuned"], report["val/f1_micro_untuned"] = f1_scores(calibrated >= 0.5, targets)
        report["val/f1_tuned"], report["val/f1_micro_tuned"] = f1_scores(tuned, targets)
    return report
