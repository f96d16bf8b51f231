"""The Lightning data module: reads a source, splits it, takes the label set, tokenizes each split once
(cached on disk) and serves length-bucketed batches. Each step is its own module; this one wires them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
from torch.utils.data import DataLoader
from transformers import PreTrainedTokenizerBase

from textclf.config import plain
from textclf.data import batching, splits
from textclf.data.batching import LengthBucketBatchSampler, TokenizedSplit
from textclf.data.frames import Splits
from textclf.data.labels import LabelSet, Scores
from textclf.data.settings import DATASET_SPLITS
from textclf.data.sources import Source
from textclf.data.tokenization import FULL, check_truncation, load_tokenizer, tokenize_cached
from textclf.data.windows import TextBatchSampler, check_windows, cut_windows, special_tokens
from textclf.errors import SettingError
from textclf.model.tasks import TASKS
from textclf.training.resuming import epoch_position


class TextClassificationDataModule(L.LightningDataModule):
    """Tokenized, length-bucketed batches of a text classification dataset.

    With `labels` given (a checkpoint's label names) the data is checked against them instead of defining
    them, and a `files` source needs no training file: that is how a checkpoint is evaluated. Defaults are
    those of `conf/data/default.yaml`.
    """

    def __init__(
        self,
        source: str,
        tokenizer: str,
        batch_size: int = 32,
        eval_batch_size: int = 128,
        max_length: int = 128,
        truncation: str = "head",
        pair_truncation: str = "longest_first",
        long_texts: str = "truncate",
        window_stride: int = 32,
        max_windows: int | None = None,
        window_aggregation: str = "mean",
        max_train_examples: int | None = None,
        train_per_class: int | None = None,
        sample_seed: int | None = None,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        split_seed: int = 42,
        seed: int = 42,
        bucket_batches: int = 50,
        pad_to_multiple_of: int = batching.PAD_TO_MULTIPLE_OF,
        multi_label: bool = False,
        task: str = "classification",
        label_delimiter: str | None = None,
        empty_texts: str = "drop",
        num_workers: int = 0,
        cache_dir: str | None = ".cache/textclf",
        train_file: str | None = None,
        val_file: str | None = None,
        test_file: str | None = None,
        text_column: str = "text",
        label_column: str = "label",
        text_pair_column: str | None = None,
        path: str | None = None,
        config_name: str | None = None,
        data_files: str | list[str] | dict[str, Any] | None = None,
        revision: str | None = None,
        from_disk: str | None = None,
        trust_remote_code: bool = False,
        splits: Mapping[str, str | None] | None = DATASET_SPLITS,
        labels: list[str] | None = None,
        fold: int | None = None,
        folds: int | None = None,
        exclude_rows: str | None = None,
        relabel_file: str | None = None,
    ) -> None:
        super().__init__()
        # plain values in the hyper-parameters: checkpoints are read back with weights_only
        data_files, splits = plain(data_files), dict(plain(splits)) if splits is not None else None
        self.save_hyperparameters(logger=False)
        check_long_text_settings(self.hparams)
        self.source = Source.from_settings(self.hparams)  # checks the name before any work
        check_task(task, multi_label)
        self.tokenizer: PreTrainedTokenizerBase | None = None
        self.frames: Splits = {}
        self.datasets: dict[str, TokenizedSplit] = {}
        self.labels: LabelSet | Scores | None = given_labels(labels, task, multi_label)
        self.resume_position: tuple[int, int] | None = None  # (epoch, batches done) from a checkpoint

    @property
    def id2label(self) -> dict[int, str]:
        return self.labels.id2label if self.labels else {}

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        hp = self.hparams
        self.tokenizer = load_tokenizer(hp.tokenizer)
        self.source, self.frames = splits.read(hp, hp.multi_label, train_required=self.labels is None)
        self.labels = split_labels(self.labels, self.frames, self.source, hp)
        window_tokens = None
        if hp.get("long_texts", "truncate") == "window":  # older checkpoints' settings: truncate
            window_tokens = special_tokens(self.tokenizer)
            check_windows(
                "window", hp.window_stride, hp.max_windows, "mean", hp.max_length, self.source.pairs, sum(window_tokens)
            )
        for split, frame in self.frames.items():
            self.datasets[split] = tokenize_split(
                frame, split, self.tokenizer, self.labels, self.source, hp, window_tokens
            )

    def class_weights(self) -> list[float]:
        return self.labels.class_weights(self.datasets["train"].labels)

    def target_scale(self) -> tuple[float, float]:
        """The mean and standard deviation of the training targets (regression standardizes by them)."""
        targets = self.datasets["train"].labels.astype(np.float64)
        return float(targets.mean()), float(targets.std()) or 1.0

    def dataloader(self, split: str, shuffle: bool = False) -> DataLoader:
        """Length-bucketed batches of one split; shuffled (training) or sorted by length (evaluation)."""
        hp, dataset = self.hparams, self.datasets[split]
        by_text = dataset.text_index is not None and not shuffle  # windows: batches of whole texts, sharded by text
        sampler = batch_sampler(dataset, hp, shuffle, by_text, self.trainer)
        if shuffle and self.resume_position is not None:  # set only when a checkpoint was loaded
            sampler.skip_once(*self.resume_position)
            self.resume_position = None
        return batching.loader(
            dataset, sampler, self.tokenizer.pad_token_id, hp.pad_to_multiple_of, hp.num_workers, hp.seed, by_text
        )

    def state_dict(self) -> dict[str, int]:
        """Where training is in its epoch, saved with every checkpoint: a resumed run skips the batches
        this epoch already trained on (the order of an epoch's batches depends only on seed and epoch)."""
        return epoch_position(self.trainer)

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        if state_dict:
            self.resume_position = (state_dict["epoch"], state_dict["batches_done"])

    def train_dataloader(self) -> DataLoader:
        return self.dataloader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self.dataloader("val")

    def test_dataloader(self) -> DataLoader:
        return self.dataloader("test")

    def describe(self) -> dict[str, Any]:
        """Sizes and labels, for the run's log."""
        described = {"splits": {split: len(ds) for split, ds in self.datasets.items()}, "labels": self.labels.names}
        if self.hparams.get("long_texts") == "window":  # the splits' sizes count windows; these count texts
            described["texts"] = {split: len(self.frames[split]) for split in self.datasets}
        return described


def check_long_text_settings(hp: Mapping[str, Any]) -> None:
    """Wrong truncation and window settings fail when the module is made, before any data is read."""
    pairs = hp["text_pair_column"] is not None
    check_truncation(hp["truncation"], pairs=pairs, pair_truncation=hp["pair_truncation"])
    check_windows(
        hp["long_texts"], hp["window_stride"], hp["max_windows"], hp["window_aggregation"], hp["max_length"], pairs
    )


def check_task(task: str, multi_label: bool) -> None:
    """A task textclf has, and no multi-label regression (a number per text is a single target)."""
    if task not in TASKS:
        raise SettingError(f"data.task must be one of {', '.join(TASKS)}, not '{task}'")
    if task == "regression" and multi_label:
        raise SettingError("data.task=regression predicts one number per text: data.multi_label must be false")


def given_labels(labels: list[str] | None, task: str, multi_label: bool) -> LabelSet | Scores | None:
    """The label set a checkpoint names (the data is then checked against it); None: the data defines it."""
    if not labels:
        return None
    return Scores(labels[0]) if task == "regression" else LabelSet(labels, multi_label)


def split_labels(
    given: LabelSet | Scores | None, frames: Splits, source: Source, hp: Mapping[str, Any]
) -> LabelSet | Scores:
    """The labels the splits are encoded with: those given, checked against the data, or the data's own
    (for classification, in the order of the source's label names where it has them)."""
    if given is None and hp["task"] != "regression":
        return LabelSet.from_splits(frames, hp["multi_label"], source.where, source.label_names())
    labels = given if given is not None else Scores()
    labels.check(frames, source.where)
    return labels


def tokenize_split(
    frame: pd.DataFrame,
    split: str,
    tokenizer: PreTrainedTokenizerBase,
    labels: LabelSet | Scores,
    source: Source,
    hp: Mapping[str, Any],
    window_tokens: tuple[int, int] | None,
) -> TokenizedSplit:
    """One split's token ids (cached on disk) and encoded labels; with `window_tokens` (the special tokens
    in front of and behind a text) each text is cut into windows of max_length tokens."""
    input_ids, offsets, segments = tokenize_cached(
        frame["text"],
        tokenizer,
        hp["max_length"],
        hp["cache_dir"],
        FULL if window_tokens is not None else hp["truncation"],  # windows: whole texts cached, cut below
        f"tokenizing {split}",
        fingerprint=splits.split_fingerprint(source, hp, hp["multi_label"], split),
        pairs=frame["text_pair"] if source.pairs else None,
        pair_truncation=hp.get("pair_truncation", "longest_first"),
    )
    encoded = labels.encode(frame["label"])
    if window_tokens is None:
        return TokenizedSplit(input_ids, offsets, encoded, segments)
    # training takes the first max_windows of each text; evaluation every window
    limit = hp["max_windows"] if split == "train" else None
    input_ids, offsets, text_index = cut_windows(
        input_ids, offsets, hp["max_length"], hp["window_stride"], *window_tokens, limit
    )
    return TokenizedSplit(input_ids, offsets, encoded[text_index], None, text_index)


def batch_sampler(
    dataset: TokenizedSplit, hp: Mapping[str, Any], shuffle: bool, by_text: bool, trainer: L.Trainer | None
) -> LengthBucketBatchSampler | TextBatchSampler:
    """The batches of this process's share of a split: length-bucketed examples, shuffled by the trainer's
    epoch for training, or (`by_text`, windows in evaluation) whole texts' windows together."""
    num_replicas, rank = (trainer.world_size, trainer.global_rank) if trainer else (1, 0)
    if by_text:
        return TextBatchSampler(dataset.text_index, dataset.lengths, hp["eval_batch_size"], num_replicas, rank)
    return LengthBucketBatchSampler(
        dataset.lengths,
        hp["batch_size"] if shuffle else hp["eval_batch_size"],
        shuffle=shuffle,
        seed=hp["seed"],
        bucket_batches=hp["bucket_batches"],
        num_replicas=num_replicas,
        rank=rank,
        current_epoch=(lambda: trainer.current_epoch) if shuffle and trainer else None,
    )
