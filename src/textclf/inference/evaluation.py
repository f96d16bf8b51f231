"""`evaluate(cfg)`, behind `textclf-eval`: a checkpoint's test metrics on any data config, and the reports
people look at.

    textclf-eval ckpt_path=outputs/train/runs/…/checkpoints/last.ckpt data=rotten_tomatoes

Writes to its run dir: `metrics.json` (with the expected calibration error, before and after the
checkpoint's temperature when it has one), `per_class.csv` and `per_class.md` (precision, recall, F1 and
support per label), `confusion_matrix.png` and `reliability_diagram.png` (also logged to TensorBoard), and
`misclassified.csv` with `misclassified.html` (the most confident mistakes, each with the tokens that made
it: `explain_misclassified`); for regression `metrics.json`, `errors.csv` and `predicted_vs_true.png` (also logged).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig
from torch.utils.tensorboard import SummaryWriter

from textclf.atomic import write_atomically, write_json_atomically
from textclf.data import splits
from textclf.data.labels import LabelSet, Scores
from textclf.errors import DataError
from textclf.inference.explaining import write_misclassified_page
from textclf.inference.predictor import Predictor
from textclf.log import log
from textclf.model import calibration
from textclf.plots import confusion_figure, reliability_figure, scatter_figure
from textclf.precision import resolve_precision


def read_split(data: DictConfig, split: str, labels: LabelSet | Scores) -> pd.DataFrame:
    """One split of a data config, prepared as for training (the same split of the same rows when the
    config matches), its labels checked against the checkpoint's."""
    source, frames = splits.read(data, labels.multi_label, train_required=False)
    if split not in frames:
        raise DataError(f"split={split}: not in this data (it has {', '.join(frames)})")
    labels.check({split: frames[split]}, source.where)
    return frames[split]


def metrics_of(model: Any, logits: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """The model's own test metrics and loss, as `textclf-train` reports them for its test split."""
    logits_, targets_ = torch.from_numpy(logits), torch.from_numpy(targets)
    metrics = model.task.metrics("test")
    metrics.update(model.task.metric_inputs(model.task.probabilities(logits_)), model.task.metric_targets(targets_))
    with torch.inference_mode():  # a fresh fp32 loss: the model's own may have been cast to 16 bits
        loss = model.task.loss()(logits_, targets_)
    return {key: float(value) for key, value in metrics.compute().items()} | {"test/loss": float(loss)}


def calibration_of(model: Any, logits: np.ndarray, targets: np.ndarray) -> tuple[dict[str, float], Any]:
    """The expected calibration error of the raw probabilities (`test/ece`) and, for a checkpoint with a
    fitted temperature, of the calibrated ones (`test/ece_calibrated`); and the reliability diagram."""
    multi_label, temperature = model.task.multi_label, model.task.temperature
    logits_, targets_ = torch.from_numpy(logits), torch.from_numpy(targets)
    temperatures = {"uncalibrated": 1.0} | ({f"temperature {temperature:.3g}": temperature} if temperature != 1 else {})
    metrics, curves = {}, {}
    for name, value in temperatures.items():
        probabilities = calibration.raw_probabilities(logits_, multi_label, value)
        key = "test/ece" if value == 1.0 else "test/ece_calibrated"
        metrics[key] = calibration.expected_calibration_error(probabilities, targets_, multi_label)
        curves[f"{name} (ECE {metrics[key]:.3f})"] = calibration.reliability_bins(
            probabilities.numpy(), targets, multi_label
        )
    return metrics, reliability_figure(curves)


def per_class_report(predicted: np.ndarray, targets: np.ndarray, names: list[str]) -> pd.DataFrame:
    """Precision, recall, F1 and support per label, from one-hot or multi-hot predictions and targets."""
    true_positive = (predicted & targets).sum(0)
    precision = true_positive / np.maximum(predicted.sum(0), 1)
    recall = true_positive / np.maximum(targets.sum(0), 1)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    return pd.DataFrame(
        {
            "label": names,
            "precision": precision.round(4),
            "recall": recall.round(4),
            "f1": f1.round(4),
            "support": targets.sum(0),
        }
    )


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Predict the chosen split with the checkpoint and write metrics and reports."""
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    # mixed precision as in training (not inference's 16-bit weights): the metrics match training's test
    predictor = Predictor.from_checkpoint(cfg.ckpt_path, precision=resolve_precision(cfg.precision), device=cfg.device)
    model, task = predictor.model, predictor.task
    names = list(model.id2label.values())
    labels = Scores(names[0]) if task.regression else LabelSet(names, task.multi_label)
    frame = read_split(cfg.data, cfg.split, labels)
    if predictor.pairs != ("text_pair" in frame):
        raise DataError(
            f"the checkpoint reads {'pairs of texts' if predictor.pairs else 'single texts'}: "
            f"set data.text_pair_column {'to the second text' if predictor.pairs else 'to null'}"
        )
    logits = predictor.text_logits(
        frame["text"],
        show_progress=len(frame) >= 2_000,
        cache_dir=cfg.paths.cache_dir,
        batch_size=cfg.data.eval_batch_size,
        pad_to_multiple_of=cfg.data.pad_to_multiple_of,
        pairs=frame["text_pair"] if predictor.pairs else None,
    )

    targets = labels.encode(frame["label"])
    metrics = metrics_of(model, logits, targets)
    probabilities = predictor.probabilities(logits)
    if task.regression:
        write_regression_report(output_dir, frame, targets, probabilities[:, 0])
        scatter = scatter_figure(targets, probabilities[:, 0], names[0])
        write_pictures(output_dir, cfg.split, {"predicted_vs_true": scatter}, metrics)
        return finish(cfg, output_dir, metrics, len(frame))
    calibration_metrics, reliability = calibration_of(model, logits, targets)
    metrics |= calibration_metrics
    predicted = task.decisions(torch.from_numpy(probabilities)).numpy()
    truth = targets.astype(bool) if task.multi_label else np.eye(len(names), dtype=bool)[targets]
    report = per_class_report(predicted, truth, names)

    write_atomically(output_dir / "per_class.csv", lambda path: report.to_csv(path, index=False))
    write_atomically(output_dir / "per_class.md", lambda path: path.write_text(report.to_markdown(index=False) + "\n"))
    write_misclassified(
        output_dir, frame, predicted, truth, probabilities, predictor, cfg.get("explain_misclassified", 0)
    )
    figures = {"reliability_diagram": reliability}
    if not task.multi_label:
        confusion = np.zeros((len(names), len(names)), dtype=np.int64)
        np.add.at(confusion, (targets, probabilities.argmax(1)), 1)
        figures["confusion_matrix"] = confusion_figure(confusion, names)
    write_pictures(output_dir, cfg.split, figures, metrics)
    log.info(report.to_markdown(index=False))
    return finish(cfg, output_dir, metrics, len(frame))


def write_misclassified(
    output_dir: Path,
    frame: pd.DataFrame,
    predicted: np.ndarray,
    truth: np.ndarray,
    probabilities: np.ndarray,
    predictor: Predictor,
    explained: int,
) -> None:
    """`misclassified.csv`, the most confident mistakes first, and `misclassified.html`: the first `explained`
    of them with the tokens that made each."""
    names = np.array(list(predictor.id2label.values()))
    wrong = np.flatnonzero((predicted != truth).any(1))
    misclassified = pd.DataFrame(
        {
            "text": frame["text"].iloc[wrong].tolist(),
            "true": ["|".join(names[truth[i]]) for i in wrong],
            "predicted": ["|".join(names[predicted[i]]) for i in wrong],
            "probability": [float(probabilities[i][predicted[i]].max()) if predicted[i].any() else 0.0 for i in wrong],
        }
    ).sort_values("probability", ascending=False)
    write_atomically(output_dir / "misclassified.csv", lambda path: misclassified.to_csv(path, index=False))
    mistakes = wrong[misclassified.index[:explained]]
    if len(mistakes):
        texts = frame["text"].iloc[mistakes].tolist()
        pairs = frame["text_pair"].iloc[mistakes].tolist() if predictor.pairs else None
        true = misclassified["true"].iloc[: len(mistakes)].tolist()
        write_misclassified_page(output_dir / "misclassified.html", predictor.model, texts, pairs, true)


def write_pictures(output_dir: Path, split: str, figures: dict[str, Any], metrics: dict[str, float]) -> None:
    """Each figure as `<name>.png` and, with the metrics, in TensorBoard under `tensorboard/` (`<split>/<name>`)."""
    writer = SummaryWriter(str(output_dir / "tensorboard"))
    for name, figure in figures.items():
        figure.savefig(output_dir / f"{name}.png", dpi=120)
        writer.add_figure(f"{split}/{name}", figure)
    for key, value in metrics.items():
        writer.add_scalar(key, value)
    writer.close()


def write_regression_report(output_dir: Path, frame: pd.DataFrame, targets: np.ndarray, scores: np.ndarray) -> None:
    """`errors.csv`: every text with its true and predicted score, the largest errors first."""
    errors = pd.DataFrame({"text": frame["text"], "true": targets, "predicted": scores.round(6)})
    errors = errors.iloc[np.argsort(-np.abs(scores - targets), kind="stable")]
    write_atomically(output_dir / "errors.csv", lambda path: errors.to_csv(path, index=False))


def finish(cfg: DictConfig, output_dir: Path, metrics: dict[str, float], examples: int) -> dict[str, float]:
    write_json_atomically(
        output_dir / "metrics.json",
        {**metrics, "ckpt_path": str(cfg.ckpt_path), "split": cfg.split, "examples": examples},
    )
    log.info(f"metrics: {json.dumps(metrics, indent=2)}")
    return metrics
