"""`textclf-eval`: a checkpoint's test metrics on any data config, and the reports people look at.

    textclf-eval ckpt_path=outputs/train/runs/…/checkpoints/last.ckpt data=rotten_tomatoes

Writes to its run dir: `metrics.json`, `per_class.csv` and `per_class.md` (precision, recall, F1 and
support per label), `confusion_matrix.png` (also logged to TensorBoard), and `misclassified.csv`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch.utils.tensorboard import SummaryWriter

from textclf.cli import command_main
from textclf.files import write_atomically, write_json_atomically
from textclf.model import stage_metrics
from textclf.plots import confusion_figure
from textclf.predict import Predictor
from textclf.sources import DataError
from textclf.train import resolve_precision


def metrics_of(probabilities: np.ndarray, targets: np.ndarray, multi_label: bool, threshold: float,
               class_weights: list[float] | None = None) -> dict[str, float]:
    """The same torchmetrics objects and loss that `textclf-train` reports for its test split."""
    probs, target = torch.from_numpy(probabilities), torch.from_numpy(targets)
    metrics = stage_metrics(probs.shape[1], "test", multi_label, threshold)
    metrics.update(probs, target.long() if multi_label else target)
    weights = torch.tensor(class_weights, dtype=torch.float32) if class_weights is not None else None
    if multi_label:  # BCE with logits and pos_weight, written in probabilities
        positive_weight = weights if weights is not None else torch.ones(probs.shape[1])
        y = target.float()
        loss = -(positive_weight * y * probs.clamp(min=1e-12).log()
                 + (1 - y) * (1 - probs).clamp(min=1e-12).log()).mean()
    else:
        loss = torch.nn.functional.nll_loss(probs.clamp(min=1e-12).log(), target, weight=weights)
    return {key: float(value) for key, value in metrics.compute().items()} | {"test/loss": float(loss)}


def per_class_report(predicted: np.ndarray, targets: np.ndarray, names: list[str]) -> pd.DataFrame:
    """Precision, recall, F1 and support per label, from one-hot or multi-hot predictions and targets."""
    true_positive = (predicted & targets).sum(0)
    precision = true_positive / np.maximum(predicted.sum(0), 1)
    recall = true_positive / np.maximum(targets.sum(0), 1)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    return pd.DataFrame({"label": names, "precision": precision.round(4), "recall": recall.round(4),
                         "f1": f1.round(4), "support": targets.sum(0)})


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Predict the chosen split with the checkpoint and write metrics and reports."""
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    # mixed precision as in training (not inference's 16-bit weights): the metrics match training's test
    predictor = Predictor.from_checkpoint(cfg.ckpt_path, precision=resolve_precision(cfg.precision), device=cfg.device)
    model = predictor.model
    names = list(model.id2label.values())
    multi_label, threshold = bool(model.hparams.multi_label), float(model.hparams.threshold)
    tokenizer_dir = output_dir / "tokenizer"
    predictor.tokenizer.save_pretrained(tokenizer_dir)

    datamodule = instantiate(cfg.data, tokenizer=str(tokenizer_dir), labels=names, multi_label=multi_label,
                             max_length=predictor.max_length, truncation=predictor.truncation)
    datamodule.setup("test")
    if cfg.split not in datamodule.datasets:
        raise DataError(f"split={cfg.split}: not in this data (it has {', '.join(datamodule.datasets)})")
    dataset = datamodule.datasets[cfg.split]
    loader = datamodule.dataloader(cfg.split)
    probabilities = predictor.predict_loader(loader, len(dataset), show_progress=len(dataset) >= 2_000)

    targets = dataset.labels
    metrics = metrics_of(probabilities, targets, multi_label, threshold, model.hparams.class_weights)
    if multi_label:
        predicted, truth = probabilities >= threshold, targets.astype(bool)
    else:
        eye = np.eye(len(names), dtype=bool)
        predicted, truth = eye[probabilities.argmax(1)], eye[targets]
    report = per_class_report(predicted, truth, names)

    frame = datamodule.frames[cfg.split]
    wrong = np.flatnonzero((predicted != truth).any(1))
    misclassified = pd.DataFrame({
        "text": frame["text"].iloc[wrong].tolist(),
        "true": ["|".join(np.array(names)[truth[i]]) for i in wrong],
        "predicted": ["|".join(np.array(names)[predicted[i]]) for i in wrong],
        "probability": [float(probabilities[i][predicted[i]].max()) if predicted[i].any() else 0.0 for i in wrong],
    }).sort_values("probability", ascending=False)

    write_atomically(output_dir / "per_class.csv", lambda path: report.to_csv(path, index=False))
    write_atomically(output_dir / "per_class.md", lambda path: path.write_text(report.to_markdown(index=False) + "\n"))
    write_atomically(output_dir / "misclassified.csv", lambda path: misclassified.to_csv(path, index=False))
    writer = SummaryWriter(str(output_dir / "tensorboard"))
    if not multi_label:
        confusion = np.zeros((len(names), len(names)), dtype=np.int64)
        np.add.at(confusion, (targets, probabilities.argmax(1)), 1)
        figure = confusion_figure(confusion, names)
        figure.savefig(output_dir / "confusion_matrix.png", dpi=120)
        writer.add_figure(f"{cfg.split}/confusion_matrix", figure)
    for key, value in metrics.items():
        writer.add_scalar(key, value)
    writer.close()
    write_json_atomically(output_dir / "metrics.json", {**metrics, "ckpt_path": str(cfg.ckpt_path),
                                                         "split": cfg.split, "examples": len(dataset)})
    print(json.dumps(metrics, indent=2))
    print(report.to_markdown(index=False))
    return metrics


main = command_main(evaluate, "eval")

if __name__ == "__main__":
    main()
