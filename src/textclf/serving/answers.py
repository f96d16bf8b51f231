"""The served classifier: a checkpoint's `Predictor` and what an answer needs, logits to Hugging Face's
`[{"label", "score"}, ...]` lists. The scores are textclf-predict's: calibrated probabilities (single- and
multi-label, every label over its threshold for the latter) or the score of a regression model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

import textclf
from textclf.export.model_card import base_model, run_test_metrics
from textclf.inference.predictor import Predictor

WARM_UP_TEXTS = ["warming up", "a second, somewhat longer text to warm up the batched forward pass"]


def apply_function(logits: np.ndarray, function: str) -> np.ndarray:
    """Hugging Face's `function_to_apply` on (calibrated) logits."""
    tensor = torch.from_numpy(logits)
    if function == "softmax":
        return tensor.softmax(-1).numpy()
    return tensor.sigmoid().numpy() if function == "sigmoid" else logits


class ServedModel:
    """A `Predictor` behind the server: blocking `logits` for the batching queue, `answers` for the routes."""

    def __init__(self, predictor: Predictor, checkpoint: str | Path) -> None:
        self.predictor, self.checkpoint = predictor, Path(checkpoint)
        self.task = predictor.task
        self.names = [predictor.id2label[index] for index in range(len(predictor.id2label))]

    @property
    def pairs(self) -> bool:
        return self.predictor.pairs

    @property
    def kind(self) -> str:
        if self.task.regression:
            return "regression"
        return "multi_label" if self.task.multi_label else "single_label"

    def logits(self, texts: list[str], pairs: list[str] | None) -> np.ndarray:
        """Logits [texts, labels] of one batch (blocking: the queue runs it in its thread)."""
        return self.predictor.text_logits(texts, pairs=pairs, batch_size=len(texts))

    def warm_up(self) -> None:
        """One forward pass before the server says it is ready, so the first request is not slower."""
        self.logits(WARM_UP_TEXTS, WARM_UP_TEXTS if self.pairs else None)

    def answers(self, logits: np.ndarray, top_k: int | None, function: str | None) -> list[list[dict[str, Any]]]:
        """One list per text, best first: every label's score (a multi-label model's labels over their
        thresholds unless `top_k` or `function_to_apply` is asked for), or a regression model's score."""
        if function is None:
            scores = self.predictor.probabilities(logits)
        else:
            scores = apply_function(self.task.outputs(torch.from_numpy(logits)).numpy(), function)
        if self.task.regression:
            return [[{"label": self.names[0], "score": float(row[0])}] for row in scores]
        chosen = None
        if self.task.multi_label and top_k is None and function is None:
            chosen = self.task.decisions(torch.from_numpy(scores)).numpy()
        answers = []
        for index, row in enumerate(scores):
            order = [int(label) for label in np.argsort(-row, kind="stable")]
            if chosen is not None:
                order = [label for label in order if chosen[index, label]]
            answers.append([{"label": self.names[label], "score": float(row[label])} for label in order[:top_k]])
        return answers

    def info(self) -> dict[str, Any]:
        """What `GET /info` says: labels, task, base model, textclf's version, the run's test metrics."""
        thresholds = self.task.thresholds.tolist() if self.task.multi_label else None
        return {
            "labels": self.names,
            "task": self.kind,
            "pairs": self.pairs,
            "thresholds": thresholds,
            "temperature": float(self.task.temperature),
            "base_model": base_model(self.predictor.model),
            "max_length": self.predictor.max_length,
            "long_texts": self.predictor.long_texts,
            "textclf_version": textclf.__version__,
            "metrics": run_test_metrics(self.checkpoint),
        }
