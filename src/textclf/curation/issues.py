"""Label issues from out-of-fold predictions (`oof_predictions.parquet`): likely wrong labels by cleanlab's
confident learning, near-duplicate texts with conflicting labels (neighbours in embedding space that share
most of their words) and outliers (far from their neighbours in embedding space),
and for regression the largest residuals. One row per issue, worst (lowest label quality) first, with the
columns of `label_issues.csv`: row, text, label, suggested_label, label_quality, issue.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from textclf.errors import SettingError

COLUMNS = ["row", "text", "label", "suggested_label", "label_quality", "issue"]
NEIGHBOURS = 10  # the outliers' neighbourhood, as cleanlab's Datalab has it
OUTLIER_IQRS = 1.7  # Datalab's default: a mean neighbour distance above Q3 + 1.7 IQR is an outlier
CHUNK_ROWS = 2048  # rows of the similarity matrix computed at a time


@dataclass(frozen=True)
class Predictions:
    """What an audit reads from `oof_predictions.parquet`: the given labels (indices, or lists of indices
    for multi-label; numbers for regression), the predicted probabilities (or scores), the label names,
    and the embeddings where they were saved."""

    frame: pd.DataFrame
    names: list[str]
    probabilities: np.ndarray
    labels: np.ndarray | list[list[int]]
    multi_label: bool
    regression: bool
    embeddings: np.ndarray | None

    @classmethod
    def of(cls, frame: pd.DataFrame) -> Predictions:
        embeddings = np.stack(frame["embedding"].to_numpy()) if "embedding" in frame else None
        if "score" in frame:
            scores = frame["score"].to_numpy(dtype=np.float64)[:, None]
            return cls(frame, [], scores, frame["label"].to_numpy(np.float64), False, True, embeddings)
        names = [column.removeprefix("prob_") for column in frame.columns if column.startswith("prob_")]
        probabilities = frame[[f"prob_{name}" for name in names]].to_numpy(dtype=np.float64)
        index = {name: position for position, name in enumerate(names)}
        first = frame["label"].iloc[0]
        if isinstance(first, (list, tuple, np.ndarray)):
            labels = [[index[name] for name in names_] for names_ in frame["label"]]
            return cls(frame, names, probabilities, labels, True, False, embeddings)
        labels = np.array([index[name] for name in frame["label"]], dtype=np.int64)
        return cls(frame, names, probabilities, labels, False, False, embeddings)

    def label_text(self) -> list[str]:
        """The given labels as text: a name, names joined by |, or a number."""
        if self.regression:
            return [f"{value:g}" for value in self.labels]
        if self.multi_label:
            return ["|".join(self.names[i] for i in row) for row in self.labels]
        return [self.names[i] for i in self.labels]

    def suggested(self) -> list[str]:
        """What the out-of-fold model says instead: the likeliest class, the labels over 0.5, or the score."""
        if self.regression:
            return [f"{value:.6g}" for value in self.probabilities[:, 0]]
        if self.multi_label:
            return ["|".join(np.array(self.names)[row > 0.5]) for row in self.probabilities]
        return [self.names[i] for i in self.probabilities.argmax(1)]


def label_issues(predictions: Predictions, filter_by: str) -> tuple[np.ndarray, np.ndarray]:
    """(is an issue, label quality) per row: cleanlab's `find_label_issues` and `get_label_quality_scores`
    (self-confidence); for regression the rows whose residual exceeds 3 standard deviations of the
    residuals, with quality exp(-|residual| / std)."""
    if predictions.regression:
        residual = np.abs(predictions.probabilities[:, 0] - predictions.labels)
        spread = float(residual.std()) or 1.0
        return residual > 3 * spread, np.exp(-residual / spread)
    try:
        from cleanlab.filter import find_label_issues
        from cleanlab.multilabel_classification.rank import get_label_quality_scores as multi_label_quality
        from cleanlab.rank import get_label_quality_scores
    except ImportError:
        raise SettingError("textclf-audit needs the audit extra (cleanlab): pip install 'textclf[audit]'") from None
    labels, probabilities = predictions.labels, predictions.probabilities
    if predictions.multi_label:
        issues = find_label_issues(labels, probabilities, multi_label=True, filter_by=filter_by)
        return issues, multi_label_quality(labels, probabilities)
    issues = find_label_issues(labels, probabilities, filter_by=filter_by)
    return issues, get_label_quality_scores(labels, probabilities)


def nearest_neighbours(embeddings: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The `count` most similar other rows of each row and their cosine similarities, in chunks of rows
    (no N x N matrix is held)."""
    unit = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
    count = min(count, len(unit) - 1)
    neighbours = np.zeros((len(unit), count), dtype=np.int64)
    similarities = np.zeros((len(unit), count), dtype=np.float32)
    for start in range(0, len(unit), CHUNK_ROWS):
        block = unit[start : start + CHUNK_ROWS] @ unit.T
        block[np.arange(len(block)), np.arange(start, start + len(block))] = -np.inf  # not its own neighbour
        top = np.argpartition(-block, count - 1, axis=1)[:, :count]
        order = np.take_along_axis(-block, top, 1).argsort(1)
        neighbours[start : start + len(block)] = np.take_along_axis(top, order, 1)
        similarities[start : start + len(block)] = np.take_along_axis(block, neighbours[start : start + len(block)], 1)
    return neighbours, similarities


def normalized(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().lower())


def word_overlap(first: str, second: str) -> float:
    """The share of words two texts have in common (Jaccard, of their lower-cased word sets)."""
    a, b = set(first.lower().split()), set(second.lower().split())
    return len(a & b) / max(len(a | b), 1)


def duplicate_twins(predictions: Predictions, neighbours: np.ndarray | None, overlap: float) -> dict[int, int]:
    """Row position -> the position of a same or near-same text with another label: the same text once case
    and spacing are ignored, or one of its nearest neighbours in embedding space that shares at least
    `overlap` of its words (a fine-tuned encoder puts every text of a class close: the words decide)."""
    labels, texts = predictions.label_text(), [str(text) for text in predictions.frame["text"]]
    twins: dict[int, int] = {}
    first_of: dict[str, int] = {}
    for position, text in enumerate(texts):
        key = normalized(text)
        if key in first_of and labels[first_of[key]] != labels[position]:
            twins.setdefault(position, first_of[key])
            twins.setdefault(first_of[key], position)
        first_of.setdefault(key, position)
    if neighbours is None or predictions.regression:
        return twins
    for position, row in enumerate(neighbours):
        for other in row:
            if labels[other] != labels[position] and word_overlap(texts[position], texts[other]) >= overlap:
                twins.setdefault(position, int(other))
                break
    return twins


def outliers(similarities: np.ndarray) -> np.ndarray:
    """Rows whose mean cosine distance to their nearest neighbours is above Q3 + 1.7 IQR of all rows'."""
    distance = 1 - similarities.mean(1)
    q1, q3 = np.percentile(distance, [25, 75])
    return distance > q3 + OUTLIER_IQRS * (q3 - q1)


def find_issues(predictions: Predictions, filter_by: str = "prune_by_noise_rate", overlap: float = 0.8) -> pd.DataFrame:
    """Every issue found, one row each (a row can have several), worst first."""
    flagged, quality = label_issues(predictions, filter_by)
    frame, labels, suggested = predictions.frame, predictions.label_text(), predictions.suggested()
    neighbours = similarities = None
    if predictions.embeddings is not None and len(frame) > NEIGHBOURS:
        neighbours, similarities = nearest_neighbours(predictions.embeddings, NEIGHBOURS)
    twins = duplicate_twins(predictions, neighbours, overlap)
    found: list[tuple[int, str, str]] = [(int(i), suggested[i], "label") for i in np.flatnonzero(flagged)]
    found += [(position, labels[twin], "duplicate") for position, twin in sorted(twins.items())]
    if similarities is not None:
        found += [(int(i), suggested[i], "outlier") for i in np.flatnonzero(outliers(similarities))]
    positions = [position for position, _, _ in found]
    issues = pd.DataFrame(
        {
            "row": frame["row"].to_numpy()[positions],
            "text": frame["text"].to_numpy()[positions],
            "label": [labels[p] for p in positions],
            "suggested_label": [s for _, s, _ in found],
            "label_quality": np.round(quality[positions], 6),
            "issue": [issue for _, _, issue in found],
        },
        columns=COLUMNS,
    )
    return issues.sort_values(["label_quality", "row"], kind="stable").reset_index(drop=True)
