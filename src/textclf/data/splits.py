"""From raw rows to train/val/test frames: clean texts, parse labels, split deterministically.

Pure functions on DataFrames with a `text` and a `label` column; after `prepare`, every `label` cell is a
tuple of label names (one name unless the data is multi-label), and `row` says which row of the input it is.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from textclf.data.frames import SPLITS, Splits
from textclf.data.labels import Scores
from textclf.data.row_edits import RowEdits
from textclf.data.sources import Source
from textclf.errors import DataError
from textclf.log import log

EMPTY_TEXTS = ("drop", "error")


def row_labels(value: Any, delimiter: str | None) -> tuple[str, ...]:
    """The labels of one row of multi-label data: a list, or a string cut at `delimiter`."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return tuple(str(item) for item in value)
    if delimiter is None:
        return (str(value),)
    return tuple(part.strip() for part in str(value).split(delimiter) if part.strip())


def is_empty(text: pd.Series) -> pd.Series:
    """Missing, empty or whitespace-only texts, without a stripped copy of every text."""
    return text.isna() | (text.str.len() == 0) | text.str.isspace()


def clean_split(frame: pd.DataFrame, where: str, empty_texts: str) -> pd.DataFrame:
    """Drop (or refuse) empty and missing texts (either text of a pair), and refuse missing labels, naming the row."""
    text = frame["text"].astype("str")  # Arrow-backed; string checks run in Arrow, not per Python object
    empty = is_empty(text)
    if "text_pair" in frame:  # a pair with either text empty
        frame = frame.assign(text_pair=frame["text_pair"].astype("str"))
        empty |= is_empty(frame["text_pair"])
    if empty.any():
        if empty_texts == "error":
            raise DataError(
                f"{where}: row {int(np.flatnonzero(empty.to_numpy())[0]) + 1} has an empty text "
                f"({int(empty.sum())} such rows; set data.empty_texts=drop to drop them)"
            )
        log.info(f"{where}: dropped {int(empty.sum())} of {len(frame)} rows with an empty text")
        frame, text = frame.loc[~empty], text.loc[~empty]
    if "label" in frame:
        missing = frame["label"].map(
            lambda value: (
                value is None
                or (isinstance(value, float) and np.isnan(value))
                or (isinstance(value, str) and not value.strip())
            )
        )
        if missing.any():
            raise DataError(f"{where}: row {int(np.flatnonzero(missing.to_numpy())[0]) + 1} has no label")
    return frame.assign(text=text).reset_index(drop=True)


def split_off(
    frame: pd.DataFrame, fraction: float, seed: int, keep_classes: bool = True
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A deterministic random (rest, held-out) split of rows whose `label` holds tuples of names. With
    `keep_classes` (classification), a held-out row with a label that no remaining row has goes back to
    the rest: a rare class is never held out entirely (the model could not learn it)."""
    if fraction == 0:  # nothing held out (data.val_fraction=0: a run without validation)
        return frame.reset_index(drop=True), frame.iloc[:0].reset_index(drop=True)
    order = np.random.default_rng(seed).permutation(len(frame))
    held = max(1, round(fraction * len(frame)))
    rest, held_out = order[held:], order[:held]
    if not keep_classes:  # regression: the scores are no classes
        return frame.iloc[rest].reset_index(drop=True), frame.iloc[held_out].reset_index(drop=True)
    remaining = {name for names in frame["label"].iloc[rest] for name in names}
    unseen = np.array([not set(names) <= remaining for names in frame["label"].iloc[held_out]], dtype=bool)
    rest, held_out = np.concatenate([rest, held_out[unseen]]), held_out[~unseen]
    return frame.iloc[rest].reset_index(drop=True), frame.iloc[held_out].reset_index(drop=True)


def note_scores_as_classes(labels: pd.Series, where: str) -> None:
    """A classification label column of fractional numbers is most likely a score: say so, once."""
    if not pd.api.types.is_float_dtype(labels.dtype):
        return
    values = labels.dropna()
    fractional = values[values != values.round()]
    if len(fractional):
        log.warning(
            f"{where}: the labels are numbers such as {fractional.iloc[0]:g}, taken as {values.nunique()} "
            "classes; set data.task=regression to predict a number"
        )


def label_tuples(values: pd.Series, multi_label: bool, delimiter: str | None) -> list[tuple[str, ...]]:
    """Each row's labels as a tuple; rows with the same value share one tuple, so a million rows of a few
    labels hold a million pointers rather than a million tuples."""
    shared: dict[Any, tuple[str, ...]] = {}

    def labels(value: Any) -> tuple[str, ...]:
        if isinstance(value, (list, tuple, np.ndarray)):  # unhashable, and rarely repeated
            return row_labels(value, delimiter)
        if value not in shared:
            shared[value] = row_labels(value, delimiter) if multi_label else (str(value),)
        return shared[value]

    return [labels(value) for value in values]


def per_class(frame: pd.DataFrame, count: int, seed: int) -> pd.DataFrame:
    """At most `count` rows of each class, drawn at random from `seed` and kept in their order (few-shot
    training: `data.train_per_class`). A multi-label row counts for its first label."""
    first = frame["label"].map(lambda names: names[0] if names else "")
    order = np.random.default_rng(seed).permutation(len(frame))
    rank = pd.Series(order).groupby(first.iloc[order].to_numpy()).cumcount()  # within its class, in draw order
    kept = np.sort(order[rank.to_numpy() < count])
    return frame.iloc[kept].reset_index(drop=True)


def cross_validation_fold(pool: pd.DataFrame, fold: int, folds: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, val) for fold `fold` of `folds`: rows shuffled from `seed`, grouped by their labels and dealt
    round the folds in turn, so every fold holds each label in its share and the folds differ by one row at most."""
    if not 0 <= fold < folds:
        raise DataError(f"data.fold must be from 0 to {folds - 1} (data.folds={folds}), not {fold}")
    shuffled = pool.iloc[np.random.default_rng(seed).permutation(len(pool))]
    keys = ["|".join(labels) for labels in shuffled["label"]]
    by_label = shuffled.assign(_key=keys).sort_values("_key", kind="stable")
    held = np.arange(len(by_label)) % folds == fold
    rest, held_out = by_label[~held].drop(columns="_key"), by_label[held].drop(columns="_key")
    return rest.sort_index().reset_index(drop=True), held_out.sort_index().reset_index(drop=True)


def numbered(raw: Splits) -> Splits:
    """Each split with a `row` column: its rows' place in the input, counted 0-based through the training
    file, then the validation file, then the test file (what `oof_predictions.parquet`, `label_issues.csv`,
    `data.exclude_rows` and `data.relabel_file` call a row)."""
    numbered_splits, start = {}, 0
    for name in [split for split in SPLITS if split in raw]:
        frame = raw[name]
        numbered_splits[name] = frame.assign(row=np.arange(start, start + len(frame), dtype=np.int64))
        start += len(frame)
    return numbered_splits


def prepare(
    raw: Splits,
    source: Source,
    *,
    multi_label: bool,
    label_delimiter: str | None,
    empty_texts: str,
    val_fraction: float,
    test_fraction: float,
    split_seed: int,
    max_train_examples: int | None,
    fold: int | None = None,
    folds: int | None = None,
    regression: bool = False,
    exclude_rows: str | None = None,
    relabel_file: str | None = None,
    train_per_class: int | None = None,
    sample_seed: int | None = None,
) -> Splits:
    """Cleaned splits with label tuples and input row numbers; val and test split off train where the
    source has none (from `split_seed`, so runs with different seeds are tested on the same rows). With
    `folds`, train and val are pooled and fold `fold` of them becomes val (cross-validation). The rows that
    `exclude_rows` names are dropped and those `relabel_file` names relabelled after the test split is
    drawn (so the test rows stay the same) and before val and the folds are. `train_per_class` then keeps
    that many training rows of each class (drawn from `sample_seed`, else `split_seed`)."""
    if empty_texts not in EMPTY_TEXTS:
        raise DataError(f"data.empty_texts must be one of {', '.join(EMPTY_TEXTS)}, not '{empty_texts}'")
    splits = {name: clean_split(frame, source.where(name), empty_texts) for name, frame in numbered(raw).items()}
    if not regression and "train" in splits:
        note_scores_as_classes(splits["train"]["label"], source.where("train"))
    splits = {
        name: frame.assign(label=label_tuples(frame["label"], multi_label, label_delimiter))
        for name, frame in splits.items()
    }
    if regression:  # before splitting: an error names the row of the file
        Scores().check(splits, source.where)
    if "train" in splits:
        if "test" not in splits:
            splits["train"], splits["test"] = split_off(splits["train"], test_fraction, split_seed, not regression)
        edits = RowEdits(exclude_rows, relabel_file, multi_label, label_delimiter, regression)
        splits = edits.apply(splits, sum(len(frame) for frame in raw.values()))
        if "val" not in splits:
            fraction = val_fraction / (1 - test_fraction) if "test" not in raw else val_fraction
            splits["train"], splits["val"] = split_off(splits["train"], fraction, split_seed + 1, not regression)
        if folds:
            pool = pd.concat([splits["train"], splits["val"]], ignore_index=True)
            splits["train"], splits["val"] = cross_validation_fold(pool, fold or 0, folds, split_seed + 2)
        if train_per_class is not None:
            if regression:
                raise DataError("data.train_per_class: regression has no classes to count (data.max_train_examples)")
            splits["train"] = per_class(
                splits["train"], train_per_class, split_seed if sample_seed is None else sample_seed
            )
        if max_train_examples is not None:
            splits["train"] = splits["train"].iloc[:max_train_examples]
    return splits


ROW_SETTINGS = ("label_delimiter", "empty_texts", "val_fraction", "test_fraction", "split_seed", "max_train_examples")


LATER_ROW_SETTINGS = (
    "fold",
    "folds",
    "exclude_rows",
    "relabel_file",
    "train_per_class",
    "sample_seed",
)  # absent from older checkpoints


def row_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The settings that decide which rows each split holds, and with which labels."""
    return {key: settings[key] for key in ROW_SETTINGS} | {key: settings.get(key) for key in LATER_ROW_SETTINGS}


def read(settings: Mapping[str, Any], multi_label: bool, train_required: bool = True) -> tuple[Source, Splits]:
    """The source and the prepared splits that data settings describe: a data config (`data.*`) or a
    data module's hyper-parameters."""
    source = Source.from_settings(settings)
    raw = source.read(train_required)
    regression = settings.get("task") == "regression"  # absent from older checkpoints
    return source, prepare(raw, source, multi_label=multi_label, regression=regression, **row_settings(settings))


def split_fingerprint(source: Source, settings: Mapping[str, Any], multi_label: bool, split: str) -> str | None:
    """What identifies the rows of one prepared split without reading them: the source's fingerprint
    (a Hugging Face dataset's) and the settings that clean and split it; None for other sources."""
    fingerprint = source.fingerprint()
    if fingerprint is None:
        return None
    identity = [fingerprint, split, multi_label, row_settings(settings)]
    if settings.get("task") == "regression":  # split without keeping classes whole
        identity.append("regression")
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:32]
