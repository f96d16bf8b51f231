"""The schema of conf/data (`textclf.schema`): every data setting's type, range and choices, the choices'
one home (tokenization, windows and the DataModule read them from here), and the data settings that
contradict each other. Light: no pandas, no tokenizer."""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from textclf.schema import (
    FRACTION,
    POSITIVE,
    contradiction,
    one_of,
    register,
    selected,
    setting,
    whole,
)

TASKS = ("classification", "regression")
TRUNCATIONS = ("head", "tail", "head_tail")
PAIR_TRUNCATIONS = ("longest_first", "only_second")
LONG_TEXTS = ("truncate", "window")
AGGREGATIONS = ("mean", "max")
EMPTY_TEXTS = ("drop", "error")
# data=hf: the dataset's split names for textclf's train, val and test (data.splits maps others)
DATASET_SPLITS = MappingProxyType({"train": "train", "val": "validation", "test": "test"})
# the fewest tokens a text can be cut to: the special tokens ([CLS] a [SEP] b [SEP]) and a word of each text
MIN_LENGTH = 4


@dataclass
class DatasetSplits:
    """`data.splits` (data=hf): the dataset's split for each of textclf's (null: split off train)."""

    train: str | None = setting()
    val: str | None = setting()
    test: str | None = setting()


@dataclass
class DataSettings:
    """conf/data/default.yaml: every source's settings (the DataModule takes them all; a user's data config
    that starts from `default` may set any of them)."""

    _target_: str = setting()
    source: str = setting()
    tokenizer: str | None = setting()
    text_pair_column: str | None = setting()
    batch_size: int = setting(POSITIVE)
    eval_batch_size: int = setting(POSITIVE)
    max_length: int = setting(whole(MIN_LENGTH, unit="tokens"))
    truncation: str = setting(one_of(TRUNCATIONS))
    pair_truncation: str = setting(one_of(PAIR_TRUNCATIONS))
    long_texts: str = setting(one_of(LONG_TEXTS))
    window_stride: int = setting(whole(0, unit="tokens"))
    max_windows: int | None = setting(whole(1, optional=True, note="every window"))
    window_aggregation: str = setting(one_of(AGGREGATIONS))
    max_train_examples: int | None = setting(whole(1, optional=True, note="all"))
    train_per_class: int | None = setting(whole(1, optional=True, note="all"))
    sample_seed: int | None = setting()
    fold: int | None = setting(whole(0, optional=True))
    folds: int | None = setting(whole(2, optional=True))
    val_fraction: float = setting(FRACTION)
    test_fraction: float = setting(FRACTION)
    split_seed: int = setting()
    seed: int = setting()
    bucket_batches: int = setting(POSITIVE)
    pad_to_multiple_of: int = setting(POSITIVE)
    task: str = setting(one_of(TASKS))
    multi_label: bool = setting()
    label_delimiter: str | None = setting()
    empty_texts: str = setting(one_of(EMPTY_TEXTS))
    num_workers: int = setting(whole(0))
    cache_dir: str | None = setting()
    # textclf-audit's findings acted on: rows to drop, rows to relabel (CSV files)
    exclude_rows: str | None = setting()
    relabel_file: str | None = setting()
    # the sources' own keys: data=files
    train_file: str | None = setting()
    val_file: str | None = setting()
    test_file: str | None = setting()
    text_column: str = setting()
    label_column: str = setting()
    # data=hf
    path: str | None = setting()
    config_name: str | None = setting()
    data_files: Any = setting()
    revision: str | None = setting()
    from_disk: str | None = setting()
    trust_remote_code: bool = setting()
    splits: DatasetSplits = setting()


register("data", DataSettings)


@contradiction
def regression_with_several_labels(cfg: Any) -> str | None:
    if selected(cfg, "data.task") == "regression" and selected(cfg, "data.multi_label") is True:
        return "data.multi_label: true contradicts data.task=regression (one number per text: multi_label=false)"
    return None


@contradiction
def fractions_leave_no_training_data(cfg: Any) -> str | None:
    val, test = selected(cfg, "data.val_fraction"), selected(cfg, "data.test_fraction")
    if isinstance(val, float | int) and isinstance(test, float | int) and val + test >= 1:
        return f"data.val_fraction: {val} with data.test_fraction={test} leaves no training data (together < 1)"
    return None


@contradiction
def single_text_settings_on_pairs(cfg: Any) -> str | None:
    if selected(cfg, "data.text_pair_column") is None:
        if selected(cfg, "data.pair_truncation") == "only_second":
            return "data.pair_truncation: only_second is for text pairs (set data.text_pair_column, or longest_first)"
        return None
    if selected(cfg, "data.truncation") == "head_tail":
        return "data.truncation: head_tail is for single texts, not data.text_pair_column's pairs (head or tail)"
    if selected(cfg, "data.long_texts") == "window":
        return "data.long_texts: window is for single texts, not data.text_pair_column's pairs (truncate)"
    return None


@contradiction
def windows_that_do_not_advance(cfg: Any) -> str | None:
    stride, length = selected(cfg, "data.window_stride"), selected(cfg, "data.max_length")
    windows = selected(cfg, "data.long_texts") == "window" and isinstance(stride, int) and isinstance(length, int)
    if windows and stride >= length:  # the exact bound counts the tokenizer's special tokens (data.windows)
        return f"data.window_stride: {stride} with data.max_length={length} leaves windows no new tokens (smaller)"
    return None


@contradiction
def fold_beyond_folds(cfg: Any) -> str | None:
    fold, folds = selected(cfg, "data.fold"), selected(cfg, "data.folds")
    if isinstance(fold, int) and isinstance(folds, int) and fold >= folds:
        return f"data.fold: {fold} with data.folds={folds} (a fold from 0 to {folds - 1})"
    return None
