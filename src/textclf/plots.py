"""Pictures people would rather look at than read: the confusion matrix, predicted against true scores, a
sweep's history and what mattered, a reliability diagram."""

from __future__ import annotations

import warnings
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")  # files and TensorBoard only, no window
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)

MAX_INCHES = 24.0
MAX_NAMED = 50  # classes beyond this are drawn without tick labels (the per-class report names them)


def confusion_figure(confusion: np.ndarray, names: list[str]) -> plt.Figure:
    """Counts, with each row (true label) shaded by its share, so rare classes stay readable."""
    shares = confusion / np.maximum(confusion.sum(1, keepdims=True), 1)
    # capped: 1,000 classes at 0.45 inch each would be a 45,000-pixel-wide image (gigabytes)
    size = min(max(4.0, 0.45 * len(names) + 2), MAX_INCHES)
    figure, axes = plt.subplots(figsize=(size + 1, size))
    image = axes.imshow(shares, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    axes.set(xlabel="predicted", ylabel="true", title="confusion matrix (colour: share of the true label)")
    if len(names) <= MAX_NAMED:
        axes.set(xticks=range(len(names)), yticks=range(len(names)))
        axes.set_xticklabels(names, rotation=45, ha="right")
        axes.set_yticklabels(names)
    if len(names) <= 25:
        for row in range(len(names)):
            for column in range(len(names)):
                axes.text(
                    column,
                    row,
                    str(confusion[row, column]),
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if shares[row, column] > 0.5 else "black",
                )
    figure.colorbar(image, ax=axes, fraction=0.046)
    figure.tight_layout()
    return figure


MAX_POINTS = 5_000  # beyond this many texts the scatter becomes a density of hexagons


def scatter_figure(truth: np.ndarray, predicted: np.ndarray, name: str) -> plt.Figure:
    """Predicted against true scores (regression) with the diagonal of perfect predictions: where the
    model is biased, compressed towards the mean, or wrong on a range of scores."""
    figure, axes = plt.subplots(figsize=(5.5, 5))
    if len(truth) > MAX_POINTS:
        image = axes.hexbin(truth, predicted, gridsize=60, bins="log", cmap="Blues", mincnt=1)
        figure.colorbar(image, ax=axes, fraction=0.046, label="texts")
    else:
        axes.scatter(truth, predicted, s=8, alpha=0.5, linewidths=0)
    low, high = float(min(truth.min(), predicted.min())), float(max(truth.max(), predicted.max()))
    axes.plot([low, high], [low, high], linestyle="--", color="grey", linewidth=1, label="predicted = true")
    varies = len(truth) > 1 and truth.std() > 0 and predicted.std() > 0
    pearson = f", Pearson r {np.corrcoef(truth, predicted)[0, 1]:.3f}" if varies else ""
    axes.set(xlabel=f"true {name}", ylabel=f"predicted {name}", title=f"{len(truth)} texts{pearson}")
    axes.legend(loc="upper left", fontsize=8)
    figure.tight_layout()
    return figure


def study_figures(study: Any) -> dict[str, plt.Figure]:
    """Optuna's own plots of a sweep: the metric trial by trial with the best so far, and how much each
    setting mattered (fANOVA; it needs two finished trials that differ)."""
    import optuna
    from optuna.visualization import matplotlib as optuna_plots

    figures = {}
    with warnings.catch_warnings():  # Optuna marks its matplotlib plots "experimental"
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        done = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
        if done:
            figures["optimization_history"] = optuna_plots.plot_optimization_history(study).figure
        if len({t.value for t in done}) > 1:
            figures["param_importances"] = optuna_plots.plot_param_importances(study).figure
    for figure in figures.values():
        figure.tight_layout()
    return figures


def reliability_figure(curves: dict[str, dict[str, np.ndarray]]) -> plt.Figure:
    """A reliability diagram: per confidence bin, the share correct against the mean confidence, one line
    per curve (e.g. before and after calibration), with the diagonal of perfect calibration and, below,
    how many predictions each bin holds (`calibration.reliability_bins`)."""
    figure, (axes, counts) = plt.subplots(2, 1, figsize=(5, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfectly calibrated")
    for index, (name, bins) in enumerate(curves.items()):
        filled = bins["count"] > 0
        axes.plot(bins["confidence"][filled], bins["accuracy"][filled], marker="o", markersize=4, label=name)
        width = 1 / len(bins["count"])
        edges = np.arange(len(bins["count"])) * width
        share = width / len(curves)  # side by side inside each bin
        counts.bar(edges + index * share, bins["count"], share, align="edge", label=name)
    axes.set(xlim=(0, 1), ylim=(0, 1), ylabel="share correct", title="reliability diagram")
    axes.legend(loc="upper left", fontsize=8)
    counts.set(xlabel="confidence", ylabel="predictions")
    figure.tight_layout()
    return figure


def noise_figure(names: list[str], shares: np.ndarray, counts: np.ndarray) -> plt.Figure:
    """Per class, the share of its rows whose label an audit doubts (label issues), the count on each bar:
    where the labelling went wrong most."""
    order = np.argsort(-shares, kind="stable")[:MAX_NAMED]
    figure, axes = plt.subplots(figsize=(min(max(4.0, 0.4 * len(order) + 2), MAX_INCHES), 4))
    bars = axes.bar(range(len(order)), shares[order] * 100, color="tab:red")
    for bar, count in zip(bars, counts[order]):
        axes.annotate(str(int(count)), (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom")
    axes.set_xticks(range(len(order)))
    axes.set_xticklabels([names[i] for i in order], rotation=45, ha="right")
    axes.set(ylabel="% of the class flagged", title="likely label errors per given class")
    figure.tight_layout()
    return figure


def curves_figure(
    curves: dict[str, tuple[list[float], list[float]]], xlabel: str, ylabel: str, title: str
) -> plt.Figure:
    """One line per named curve of (x, y) points: e.g. test accuracy against labels bought, per strategy."""
    figure, axes = plt.subplots(figsize=(6, 4))
    for name, (x, y) in curves.items():
        axes.plot(x, y, marker="o", markersize=3, label=name)
    axes.set(xlabel=xlabel, ylabel=ylabel, title=title)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    return figure
