"""The outputs of `textclf-predict`: predictions as a frame beside the input's columns, written chunk by chunk
to CSV/TSV/JSONL/Parquet or standard output, atomically (a failed run leaves no half-written file)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from textclf.atomic import write_atomically
from textclf.errors import DataError


def predictions_frame(
    texts: list[str],
    labels: list[Any],
    probabilities: np.ndarray,
    id2label: dict[int, str],
    pairs: list[str] | None = None,
    regression: bool = False,
) -> pd.DataFrame:
    """One row per text: the label and each class's probability, or (regression) the score."""
    frame = pd.DataFrame({"text": texts} | ({"text_pair": pairs} if pairs is not None else {}))
    frame["label"] = ["|".join(label) if isinstance(label, list) else label for label in labels]
    if regression:
        return frame.rename(columns={"label": id2label[0]})
    for index, name in id2label.items():
        frame[f"prob_{name}"] = probabilities[:, index].round(6)
    return frame


def output_format(output: str) -> str:
    """csv, jsonl or stdout, checked before any work is done."""
    if output == "-":
        return "stdout"
    suffix = Path(output).suffix.lower().lstrip(".")
    if suffix not in ("csv", "jsonl"):
        raise DataError(f"{output}: unknown output type '.{suffix}' (use .csv or .jsonl, or - for stdout)")
    return suffix


class PredictionWriter:
    """Appends chunks of predictions to a CSV (one header) or JSONL file, or CSV on standard output. A
    regression model's rows hold its score under the score's name instead of a label and probabilities."""

    def __init__(self, target: Path | None, kind: str, id2label: dict[int, str], regression: bool = False) -> None:
        self.target, self.kind, self.id2label, self.rows = target, kind, id2label, 0
        self.regression = regression

    def write(
        self, texts: list[str], labels: list[Any], probabilities: np.ndarray, pairs: list[str] | None = None
    ) -> None:
        first = self.rows == 0
        self.rows += len(texts)
        if self.kind == "jsonl":
            with self.target.open("w" if first else "a", encoding="utf-8") as handle:
                for number, (text, label, row) in enumerate(zip(texts, labels, probabilities)):
                    record = {"text": text} | ({"text_pair": pairs[number]} if pairs is not None else {})
                    if self.regression:
                        record[self.id2label[0]] = label
                    else:
                        probs = {self.id2label[i]: round(float(p), 6) for i, p in enumerate(row)}
                        record |= {"label": label, "probabilities": probs}
                    handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            return
        frame = predictions_frame(texts, labels, probabilities, self.id2label, pairs, self.regression)
        if self.target is None:
            frame.to_csv(sys.stdout, index=False, header=first)
        else:
            frame.to_csv(self.target, index=False, header=first, mode="w" if first else "a")


def write_output(
    output: str, id2label: dict[int, str], fill: Callable[[PredictionWriter], None], regression: bool = False
) -> None:
    """`fill(writer)` writes every chunk; a file is written beside `output` and renamed at the end, so a
    killed or failed run leaves no part of one (and the previous file, if any, untouched)."""
    kind = output_format(output)
    if kind == "stdout":
        fill(PredictionWriter(None, "csv", id2label, regression))
    else:
        write_atomically(Path(output), lambda target: fill(PredictionWriter(target, kind, id2label, regression)))


def write_predictions(
    output: str, texts: list[str], labels: list[Any], probabilities: np.ndarray, id2label: dict[int, str]
) -> None:
    write_output(output, id2label, lambda writer: writer.write(texts, labels, probabilities))
