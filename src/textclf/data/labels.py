"""The label set: which names a model predicts, in which order, and how rows become targets (and, for
regression, `Scores`: one number per row).

Taken from the union of the splits for a new model (as Hugging Face's run_classification.py does), from
a dataset's ClassLabel feature where it has one, or from a checkpoint's `id2label` when data is
evaluated against a trained model.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from textclf.data.frames import Splits
from textclf.errors import DataError


def sorted_labels(names: set[str]) -> list[str]:
    """Label names in a stable order: numerically when every label is an integer, else alphabetically."""
    if all(name.lstrip("-").isdigit() for name in names):
        return sorted(names, key=int)
    return sorted(names)


class LabelSet:
    """Label names in index order, for single-label (class indices) or multi-label (multi-hot) targets."""

    def __init__(self, names: list[str], multi_label: bool) -> None:
        self.names, self.multi_label = list(names), multi_label

    @classmethod
    def from_splits(
        cls, splits: Splits, multi_label: bool, where: Callable[[str], str], names: list[str] | None = None
    ) -> LabelSet:
        """The training split's labels, or the source's own `names` in their order (a ClassLabel's, so that
        ids mean what they mean in the dataset); refuses a training split without two classes
        (single-label) and labels in val or test that the set lacks."""
        known = {name for row in splits["train"]["label"] for name in row}
        if not known:
            raise DataError(f"{where('train')}: no rows with a text")
        if len(known) < 2 and not multi_label:
            raise DataError(f"{where('train')}: only one class ({next(iter(known))}); a classifier needs two or more")
        labels = cls(names or sorted_labels(known), multi_label)
        labels.check(splits, where, "the label names do not have" if names else "the training split never has")
        return labels

    def check(
        self, splits: Splits, where: Callable[[str], str], reference: str = "the checkpoint does not know"
    ) -> None:
        """Refuse labels outside the set, naming the split (its file) and the first such row."""
        known = set(self.names)
        for split, frame in splits.items():
            unknown = frame["label"].map(lambda names: not set(names) <= known)
            if unknown.any():
                row = int(np.flatnonzero(unknown.to_numpy())[0])
                name = next(n for n in frame["label"].iloc[row] if n not in known)
                raise DataError(
                    f"{where(split)}: row {row + 1} has label '{name}' that {reference} "
                    f"({int(unknown.sum())} such rows)"
                )

    def __len__(self) -> int:
        return len(self.names)

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.names))

    @property
    def label2id(self) -> dict[str, int]:
        return {name: index for index, name in enumerate(self.names)}

    def encode(self, labels: pd.Series) -> np.ndarray:
        """Class indices, or multi-hot float rows for multi-label data."""
        label2id = self.label2id
        if not self.multi_label:
            return np.array([label2id[names[0]] for names in labels], dtype=np.int64)
        hot = np.zeros((len(labels), len(label2id)), dtype=np.float32)
        for row, names in enumerate(labels):
            hot[row, [label2id[name] for name in names]] = 1.0
        return hot

    def class_weights(self, targets: np.ndarray) -> list[float]:
        """Loss weights from the training targets' frequencies: n / (classes * count) per class, or, for
        multi-label data, BCE's positive weight (negatives / positives) per label."""
        if self.multi_label:
            positives = targets.sum(0).clip(min=1)
            return ((len(targets) - positives) / positives).tolist()
        counts = np.bincount(targets, minlength=len(self)).clip(min=1)
        return (len(targets) / (len(self) * counts)).tolist()


class Scores:
    """The targets of regression: one number per row, named `name` (the one output). Has the `LabelSet`
    methods the data module and `textclf-eval` call."""

    multi_label = False

    def __init__(self, name: str = "score") -> None:
        self.names = [name]

    def __len__(self) -> int:
        return 1

    @property
    def id2label(self) -> dict[int, str]:
        return {0: self.names[0]}

    def check(self, splits: Splits, where: Callable[[str], str], reference: str = "") -> None:
        """Refuse a row whose label is not a number, naming the split (its file) and the row."""
        for split, frame in splits.items():
            numbers = pd.to_numeric(frame["label"].map(lambda names: names[0]), errors="coerce")
            bad = numbers.isna() | ~np.isfinite(numbers)
            if bad.any():
                row = int(np.flatnonzero(bad.to_numpy())[0])
                raise DataError(
                    f"{where(split)}: row {row + 1} has label '{frame['label'].iloc[row][0]}', not a number "
                    f"(data.task=regression; {int(bad.sum())} such rows)"
                )

    def encode(self, labels: pd.Series) -> np.ndarray:
        return np.array([float(names[0]) for names in labels], dtype=np.float32)

    def class_weights(self, targets: np.ndarray) -> list[float]:
        raise DataError("model.class_weights=balanced is for classification, not data.task=regression")
