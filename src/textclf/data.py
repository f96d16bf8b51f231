"""Tokenized, length-bucketed batches for text classification.

The data module reads a source (see `sources.py`), splits it deterministically when the source has no
split of its own, takes the label set from the union of the splits, tokenizes each split once with the
model's fast tokenizer and caches the token ids on disk (memory-mapped NumPy arrays keyed by the texts,
the tokenizer and `max_length`), then serves batches padded only to their own longest example.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch
from rich.progress import Progress
from torch.utils.data import DataLoader, Dataset, Sampler
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from textclf import sources
from textclf.pretrained import resolve_pretrained
from textclf.sources import DataError, Splits

CACHE_FORMAT = 2  # bump when the cached arrays or the key change meaning
TOKENIZE_CHUNK = 10_000


class TokenizedSplit(Dataset):
    """Token ids of one split as a flat int32 array plus offsets (memory-mapped when cached), and labels:
    class indices, or multi-hot rows for multi-label data."""

    def __init__(self, input_ids: np.ndarray, offsets: np.ndarray, labels: np.ndarray) -> None:
        self.input_ids, self.offsets, self.labels = input_ids, offsets, labels
        self.lengths = np.diff(offsets)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray, int]:
        return self.input_ids[self.offsets[index] : self.offsets[index + 1]], self.labels[index], index


class PadCollator:
    """Pads a batch to its own longest example rounded up to a multiple of `pad_to_multiple_of`, never to
    `max_length`. Rounding to 8 costs a few padding tokens but was faster on the CPU: matrix products
    whose token count is a multiple of 256 run faster, and fewer distinct shapes compile fewer kernels
    (README "Performance"); GPUs prefer multiples of 8 as well."""

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int = 8) -> None:
        self.pad_token_id, self.pad_to_multiple_of = pad_token_id, pad_to_multiple_of

    def __call__(self, examples: list[tuple[np.ndarray, np.ndarray, int]]) -> dict[str, torch.Tensor]:
        longest = -(-max(len(ids) for ids, _, _ in examples) // self.pad_to_multiple_of) * self.pad_to_multiple_of
        input_ids = np.full((len(examples), longest), self.pad_token_id, dtype=np.int64)
        attention_mask = np.zeros((len(examples), longest), dtype=np.int64)
        for row, (ids, _, _) in enumerate(examples):
            input_ids[row, : len(ids)] = ids
            attention_mask[row, : len(ids)] = 1
        return {
            "input_ids": torch.from_numpy(input_ids),
            "attention_mask": torch.from_numpy(attention_mask),
            "labels": torch.from_numpy(np.stack([label for _, label, _ in examples])),
            "index": torch.tensor([index for _, _, index in examples]),
        }


class LengthBucketBatchSampler(Sampler[list[int]]):
    """Batches of similar length that stay random.

    Training: shuffle all examples, cut them into chunks of `bucket_batches` batches, sort each chunk by
    length, cut it into batches and shuffle the batches. Each batch is a random draw from a random
    chunk, so learning is as good as plain shuffling while padding nearly disappears.
    Evaluation (`shuffle=False`): examples sorted by length, longest first.
    Under several processes each rank takes every `num_replicas`-th training batch, or every
    `num_replicas`-th evaluation example (so every rank has work and none is seen twice).
    """

    def __init__(self, lengths: np.ndarray, batch_size: int, shuffle: bool, seed: int = 0,
                 bucket_batches: int = 50, drop_last: bool = False, num_replicas: int = 1, rank: int = 0,
                 current_epoch: Callable[[], int] | None = None) -> None:
        self.lengths, self.batch_size, self.shuffle, self.seed = lengths, batch_size, shuffle, seed
        self.bucket_batches, self.drop_last = bucket_batches, drop_last
        self.num_replicas, self.rank, self.epoch = num_replicas, rank, 0
        # the trainer's epoch, read when an epoch's first batch is drawn (Lightning calls set_epoch only on
        # a batch sampler's inner `.sampler`, and builds the training loader before a resume restores it)
        self.current_epoch = current_epoch
        self.resume_at: tuple[int, int] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def skip_once(self, epoch: int, batches: int) -> None:
        """A resumed run: the next pass over `epoch` starts after its first `batches` batches."""
        self.resume_at = (epoch, batches)

    def _batches(self) -> list[np.ndarray]:
        """This rank's batches."""
        if not self.shuffle:  # evaluation: every rank takes every num_replicas-th example, longest first
            order = np.argsort(-self.lengths, kind="stable")[self.rank :: self.num_replicas]
            return [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        rng = np.random.default_rng(self.seed + self.epoch)
        order = rng.permutation(len(self.lengths))
        chunk = self.batch_size * self.bucket_batches
        batches = []
        for start in range(0, len(order), chunk):
            part = order[start : start + chunk]
            part = part[np.argsort(self.lengths[part], kind="stable")]
            batches += [part[i : i + self.batch_size] for i in range(0, len(part), self.batch_size)]
        if self.drop_last and len(batches[-1]) < self.batch_size:
            batches = [batch for batch in batches if len(batch) == self.batch_size]
        batches = [batches[i] for i in rng.permutation(len(batches))]
        # training: every rank takes the same number of batches, so all take the same optimizer steps
        usable = len(batches) // self.num_replicas * self.num_replicas
        return batches[: max(usable, self.num_replicas)][self.rank :: self.num_replicas]

    def __iter__(self) -> Iterator[list[int]]:
        # a generator: the epoch's order is drawn at its first batch
        if self.current_epoch is not None:
            self.epoch = self.current_epoch()
        batches = self._batches()
        if self.resume_at is not None:
            epoch, done = self.resume_at
            batches = batches[done:] if epoch == self.epoch else batches
            self.resume_at = None
        self.epoch += 1  # a fresh order next time, also when nobody calls set_epoch
        for batch in batches:
            yield batch.tolist()

    def __len__(self) -> int:
        return len(self._batches())


def load_tokenizer(name_or_path: str) -> PreTrainedTokenizerBase:
    tokenizer = AutoTokenizer.from_pretrained(resolve_pretrained(name_or_path))
    if not tokenizer.is_fast:
        raise ValueError(f"tokenizer '{name_or_path}' has no fast (Rust) version; textclf needs one")
    return tokenizer


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str:
    """Changes whenever the tokenizer would produce other ids. The backend's truncation and padding
    state is left out: calling the tokenizer changes it (the truncation mode is part of the cache key)."""
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    spec.pop("truncation", None), spec.pop("padding", None)
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


TRUNCATIONS = ("head", "tail", "head_tail")


def encode(texts: list[str], tokenizer: PreTrainedTokenizerBase, max_length: int, truncation: str = "head") -> list[list[int]]:
    """Token ids with special tokens, at most `max_length` of them. Long texts keep their beginning
    (`head`), their end (`tail`), or both: a quarter head and three quarters tail (`head_tail`, the best
    of Sun et al. 2019's recipes for long documents)."""
    if truncation != "head_tail":
        tokenizer.truncation_side = "left" if truncation == "tail" else "right"
        return tokenizer(texts, truncation=True, max_length=max_length,
                         return_attention_mask=False, return_token_type_ids=False)["input_ids"]
    full = tokenizer(texts, truncation=False, verbose=False, return_attention_mask=False,
                     return_token_type_ids=False)["input_ids"]
    suffix = tokenizer.num_special_tokens_to_add() - 1  # [CLS] in front, the rest ([SEP]) behind
    head = (max_length - suffix - 1) // 4
    tail = max_length - suffix - 1 - head
    return [ids if len(ids) <= max_length else ids[: 1 + head] + ids[len(ids) - suffix - tail :] for ids in full]


def tokenize_cached(texts: pd.Series | list[str], tokenizer: PreTrainedTokenizerBase, max_length: int,
                    cache_dir: str | Path | None, truncation: str = "head",
                    description: str = "tokenizing") -> tuple[np.ndarray, np.ndarray]:
    """Token ids (flat) and offsets for `texts`, from the disk cache when the same texts, tokenizer,
    `max_length` and truncation were tokenized before. The cache entry is written to a temporary folder
    and renamed, so a killed run never leaves half an entry. Texts become Python strings one chunk at a
    time, so a large corpus is never held as Python objects."""
    texts = pd.Series(texts, dtype="str") if isinstance(texts, list) else texts
    chunks = [texts.iloc[start : start + TOKENIZE_CHUNK] for start in range(0, len(texts), TOKENIZE_CHUNK)]
    entry = None
    if cache_dir:  # no cache (prediction): no key to compute
        digest = hashlib.sha256(json.dumps([CACHE_FORMAT, tokenizer_fingerprint(tokenizer), max_length,
                                            truncation]).encode())
        for chunk in chunks:
            digest.update("\0".join(chunk.tolist()).encode("utf-8", "surrogatepass") + b"\1")
        entry = Path(cache_dir) / digest.hexdigest()[:32]
        if (entry / "offsets.npy").is_file():
            return np.load(entry / "input_ids.npy", mmap_mode="r"), np.load(entry / "offsets.npy")

    pieces, lengths = [], []
    with Progress(transient=True, disable=len(texts) < 4 * TOKENIZE_CHUNK) as progress:
        task = progress.add_task(description, total=len(texts))
        for chunk in chunks:
            encoded = encode(chunk.tolist(), tokenizer, max_length, truncation)
            chunk_lengths = [len(ids) for ids in encoded]
            lengths += chunk_lengths  # one flat array per chunk, not one small array per text
            pieces.append(np.fromiter(itertools.chain.from_iterable(encoded), dtype=np.int32, count=sum(chunk_lengths)))
            progress.advance(task, len(encoded))
    input_ids = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int32)
    offsets = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)])
    if entry is not None:
        temporary = entry.with_name(f"{entry.name}.tmp-{os.getpid()}")
        temporary.mkdir(parents=True, exist_ok=True)
        np.save(temporary / "input_ids.npy", input_ids)
        np.save(temporary / "offsets.npy", offsets)
        try:
            os.replace(temporary, entry)
        except OSError:  # another process wrote the same entry first
            shutil.rmtree(temporary, ignore_errors=True)
    return input_ids, offsets


def sorted_labels(names: set[str]) -> list[str]:
    """Label names in a stable order: numerically when every label is an integer, else alphabetically."""
    if all(name.lstrip("-").isdigit() for name in names):
        return sorted(names, key=int)
    return sorted(names)


def row_labels(value: Any, delimiter: str | None) -> tuple[str, ...]:
    """The labels of one row of multi-label data: a list, or a string cut at `delimiter`."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return tuple(str(item) for item in value)
    if delimiter is None:
        return (str(value),)
    return tuple(part.strip() for part in str(value).split(delimiter) if part.strip())


def clean_split(frame: pd.DataFrame, split: str, empty_texts: str) -> pd.DataFrame:
    """Drop (or refuse) empty and missing texts, and refuse missing labels, naming the row."""
    text = frame["text"].astype("str")  # Arrow-backed; string checks run in Arrow, not per Python object
    empty = text.isna() | (text.str.strip() == "")
    if empty.any():
        if empty_texts == "error":
            raise DataError(f"{split}: row {int(np.flatnonzero(empty.to_numpy())[0]) + 1} has an empty text "
                            f"({int(empty.sum())} such rows; set data.empty_texts=drop to drop them)")
        print(f"[textclf] {split}: dropped {int(empty.sum())} of {len(frame)} rows with an empty text")
        frame, text = frame.loc[~empty], text.loc[~empty]
    if "label" in frame:
        missing = frame["label"].map(lambda value: value is None or (isinstance(value, float) and np.isnan(value))
                                     or (isinstance(value, str) and not value.strip()))
        if missing.any():
            raise DataError(f"{split}: row {int(np.flatnonzero(missing.to_numpy())[0]) + 1} has no label")
    return frame.assign(text=text).reset_index(drop=True)


def split_off(frame: pd.DataFrame, fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A deterministic random (rest, held-out) split of rows whose `label` holds tuples of names. A
    held-out row with a label that no remaining row has goes back to the rest: a rare class is never
    held out entirely (the model could not learn it)."""
    order = np.random.default_rng(seed).permutation(len(frame))
    held = max(1, round(fraction * len(frame)))
    rest, held_out = order[held:], order[:held]
    remaining = {name for names in frame["label"].iloc[rest] for name in names}
    unseen = np.array([not set(names) <= remaining for names in frame["label"].iloc[held_out]], dtype=bool)
    rest, held_out = np.concatenate([rest, held_out[unseen]]), held_out[~unseen]
    return frame.iloc[rest].reset_index(drop=True), frame.iloc[held_out].reset_index(drop=True)


class TextClassificationDataModule(L.LightningDataModule):
    """Reads, splits, tokenizes (once, cached) and batches a text classification dataset.

    With `labels` given (a checkpoint's label names) the data is checked against them instead of defining
    them, and a `files` source needs no training file: that is how a checkpoint is evaluated.
    """

    def __init__(
        self,
        source: str = "rotten_tomatoes",
        tokenizer: str = "all-MiniLM-L6-v2",
        batch_size: int = 32,
        eval_batch_size: int = 128,
        max_length: int = 128,
        truncation: str = "head",
        max_train_examples: int | None = None,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        split_seed: int = 42,
        seed: int = 42,
        bucket_batches: int = 50,
        pad_to_multiple_of: int = 8,
        empty_texts: str = "drop",
        multi_label: bool = False,
        label_delimiter: str | None = None,
        labels: list[str] | None = None,
        num_workers: int = 0,
        cache_dir: str | None = ".cache/textclf",
        train_file: str | None = None,
        val_file: str | None = None,
        test_file: str | None = None,
        text_column: str = "text",
        label_column: str = "label",
    ) -> None:
        super().__init__()
        if source not in sources.PACKAGED and source != "files":
            raise ValueError(f"data.source: unknown source '{source}' "
                             f"(choose one of {', '.join([*sources.PACKAGED, 'files'])})")
        for key, value, allowed in (("empty_texts", empty_texts, ("drop", "error")),
                                    ("truncation", truncation, TRUNCATIONS)):
            if value not in allowed:
                raise ValueError(f"data.{key} must be one of {', '.join(allowed)}, not '{value}'")
        self.save_hyperparameters(logger=False)
        self.tokenizer: PreTrainedTokenizerBase | None = None
        self.frames: Splits = {}
        self.datasets: dict[str, TokenizedSplit] = {}
        self.id2label: dict[int, str] = dict(enumerate(labels)) if labels else {}
        self.resume_position: tuple[int, int] | None = None  # (epoch, batches done) from a checkpoint

    @property
    def label2id(self) -> dict[str, int]:
        return {name: index for index, name in self.id2label.items()}

    @property
    def num_labels(self) -> int:
        return len(self.id2label)

    def read_splits(self) -> Splits:
        """The source's splits, cleaned, with val and test split off train where the source has none."""
        hp = self.hparams
        if hp.source == "files":
            if not hp.train_file and not hp.labels:
                raise DataError("data.train_file is required with data=files")
            named = {"train": hp.train_file, "val": hp.val_file, "test": hp.test_file}
            raw = {split: sources.read_table(path, hp.text_column, hp.label_column)
                   for split, path in named.items() if path}
        else:
            raw = sources.PACKAGED[hp.source]()
        splits = {name: clean_split(frame, self.where(name), hp.empty_texts) for name, frame in raw.items()}
        splits = {name: frame.assign(label=[row_labels(v, hp.label_delimiter) if hp.multi_label else (str(v),)
                                            for v in frame["label"]])
                  for name, frame in splits.items()}
        if "train" in splits:
            if "test" not in splits:
                splits["train"], splits["test"] = split_off(splits["train"], hp.test_fraction, hp.split_seed)
            if "val" not in splits:
                fraction = hp.val_fraction / (1 - hp.test_fraction) if "test" not in raw else hp.val_fraction
                splits["train"], splits["val"] = split_off(splits["train"], fraction, hp.split_seed + 1)
            if hp.max_train_examples is not None:
                splits["train"] = splits["train"].iloc[: hp.max_train_examples]
        return splits

    def where(self, split: str) -> str:
        """How an error names a split: its file, when it has one."""
        path = self.hparams.get(f"{split}_file") if self.hparams.source == "files" else None
        return f"{path} ({split})" if path else split

    def check_labels(self, splits: Splits) -> None:
        """Refuse labels that the model cannot learn or predict, naming the split (file) and row."""
        if self.id2label:
            known, reference = set(self.id2label.values()), "the checkpoint does not know"
        else:
            known, reference = {name for names in splits["train"]["label"] for name in names}, "the training split never has"
            if not known:
                raise DataError(f"{self.where('train')}: no rows with a text")
            if len(known) < 2 and not self.hparams.multi_label:
                raise DataError(f"{self.where('train')}: only one class ({next(iter(known), 'none')}); "
                                "a classifier needs two or more")
        for split, frame in splits.items():
            unknown = frame["label"].map(lambda names: not set(names) <= known)
            if unknown.any():
                row = int(np.flatnonzero(unknown.to_numpy())[0])
                name = next(n for n in frame["label"].iloc[row] if n not in known)
                raise DataError(f"{self.where(split)}: row {row + 1} has label '{name}' that {reference} "
                                f"({int(unknown.sum())} such rows)")

    def encode_labels(self, labels: pd.Series) -> np.ndarray:
        """Class indices, or multi-hot float rows for multi-label data."""
        label2id = self.label2id
        if not self.hparams.multi_label:
            return np.array([label2id[names[0]] for names in labels], dtype=np.int64)
        hot = np.zeros((len(labels), len(label2id)), dtype=np.float32)
        for row, names in enumerate(labels):
            hot[row, [label2id[name] for name in names]] = 1.0
        return hot

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        hp = self.hparams
        self.tokenizer = load_tokenizer(hp.tokenizer)
        self.frames = self.read_splits()
        self.check_labels(self.frames)
        if not self.id2label:
            names = {name for frame in self.frames.values() for names in frame["label"] for name in names}
            self.id2label = dict(enumerate(sorted_labels(names)))
        for split, frame in self.frames.items():
            input_ids, offsets = tokenize_cached(frame["text"], self.tokenizer, hp.max_length,
                                                 hp.cache_dir, hp.truncation, f"tokenizing {split}")
            self.datasets[split] = TokenizedSplit(input_ids, offsets, self.encode_labels(frame["label"]))

    def class_weights(self) -> list[float]:
        """Loss weights from the training label frequencies: n / (classes * count) per class, or, for
        multi-label data, BCE's positive weight (negatives / positives) per label."""
        labels = self.datasets["train"].labels
        if self.hparams.multi_label:
            positives = labels.sum(0).clip(min=1)
            return ((len(labels) - positives) / positives).tolist()
        counts = np.bincount(labels, minlength=self.num_labels).clip(min=1)
        return (len(labels) / (self.num_labels * counts)).tolist()

    def dataloader(self, split: str, shuffle: bool = False) -> DataLoader:
        """Length-bucketed batches of one split; shuffled (training) or sorted by length (evaluation)."""
        trainer = self.trainer
        sampler = LengthBucketBatchSampler(
            self.datasets[split].lengths,
            self.hparams.batch_size if shuffle else self.hparams.eval_batch_size,
            shuffle=shuffle, seed=self.hparams.seed, bucket_batches=self.hparams.bucket_batches,
            num_replicas=trainer.world_size if trainer else 1, rank=trainer.global_rank if trainer else 0,
            current_epoch=(lambda: trainer.current_epoch) if shuffle and trainer else None,
        )
        if shuffle and self.resume_position is not None:  # set only when a checkpoint was loaded
            sampler.skip_once(*self.resume_position)
            self.resume_position = None
        # its own generator: iterating must not draw from torch's global random state (dropout's)
        collate = PadCollator(self.tokenizer.pad_token_id, self.hparams.pad_to_multiple_of)
        return DataLoader(self.datasets[split], batch_sampler=sampler, collate_fn=collate,
                          num_workers=self.hparams.num_workers, persistent_workers=self.hparams.num_workers > 0,
                          generator=torch.Generator().manual_seed(self.hparams.seed))

    def state_dict(self) -> dict[str, int]:
        """Where training is in its epoch, saved with every checkpoint: a resumed run skips the batches
        this epoch already trained on (the order of an epoch's batches depends only on seed and epoch)."""
        trainer = self.trainer
        if trainer is None or trainer.state.fn != "fit":
            return {}
        done = trainer.fit_loop.epoch_loop.batch_progress.current.processed
        return {"epoch": trainer.current_epoch, "batches_done": done}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        if state_dict:
            self.resume_position = (state_dict["epoch"], state_dict["batches_done"])

    def train_dataloader(self) -> DataLoader:
        return self.dataloader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self.dataloader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self.dataloader("test", shuffle=False)

    def describe(self) -> dict[str, Any]:
        """Sizes and labels, for the run's log."""
        return {"splits": {split: len(ds) for split, ds in self.datasets.items()}, "labels": list(self.id2label.values())}
