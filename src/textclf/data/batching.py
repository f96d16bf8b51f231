"""Batches of token ids: a tokenized split as a dataset, padding to each batch's own longest example, and
length-bucketed batches that stay random."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

Example = tuple[np.ndarray, np.ndarray, int, int]

# batches are padded to their longest example rounded up to a multiple of this: fewer distinct lengths create
# fewer kernels, a little padding costs less (docs/performance.md)
PAD_TO_MULTIPLE_OF = 8


class TokenizedSplit(Dataset):
    """Token ids of one split as a flat int32 array plus offsets (memory-mapped when cached), and targets:
    class indices, multi-hot rows for multi-label data, or numbers for regression. Text pairs also have
    `segments`, the length of each first segment (its tokens have token type 0, the rest type 1). Windows of
    long texts (windows.py) are the examples of a split with `text_index`, the text of each window: its
    examples' index is their text's."""

    def __init__(
        self,
        input_ids: np.ndarray,
        offsets: np.ndarray,
        labels: np.ndarray,
        segments: np.ndarray | None = None,
        text_index: np.ndarray | None = None,
    ) -> None:
        self.input_ids, self.offsets, self.labels, self.segments = input_ids, offsets, labels, segments
        self.text_index = text_index
        self.lengths = np.diff(offsets)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> Example:
        first = int(self.segments[index]) if self.segments is not None else -1
        text = int(self.text_index[index]) if self.text_index is not None else index
        return self.input_ids[self.offsets[index] : self.offsets[index + 1]], self.labels[index], text, first


class PadCollator:
    """Pads a batch to its own longest example rounded up to a multiple of `pad_to_multiple_of`, never to
    `max_length`. Rounding costs a few padding tokens but is faster on the CPU: fewer distinct shapes create
    fewer kernels (docs/performance.md).
    `by_text`: the examples are windows of whole texts (windows.TextBatchSampler); `labels` and `index` are
    then one per text and `window_text` gives each row's text among them, for aggregating its logits."""

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int = PAD_TO_MULTIPLE_OF, by_text: bool = False) -> None:
        self.pad_token_id, self.pad_to_multiple_of, self.by_text = pad_token_id, pad_to_multiple_of, by_text

    def __call__(self, examples: list[Example]) -> dict[str, torch.Tensor]:
        longest = -(-max(len(example[0]) for example in examples) // self.pad_to_multiple_of) * self.pad_to_multiple_of
        input_ids = np.full((len(examples), longest), self.pad_token_id, dtype=np.int64)
        attention_mask = np.zeros((len(examples), longest), dtype=np.int64)
        for row, (ids, *_) in enumerate(examples):
            input_ids[row, : len(ids)] = ids
            attention_mask[row, : len(ids)] = 1
        batch = {
            "input_ids": torch.from_numpy(input_ids),
            "attention_mask": torch.from_numpy(attention_mask),
            "labels": torch.from_numpy(np.stack([example[1] for example in examples])),
            "index": torch.tensor([example[2] for example in examples]),
        }
        if self.by_text:
            texts, first, window_text = np.unique(batch["index"].numpy(), return_index=True, return_inverse=True)
            batch |= {
                "labels": batch["labels"][torch.from_numpy(first)],
                "index": torch.from_numpy(texts),
                "window_text": torch.from_numpy(window_text.reshape(-1)),
            }
        if examples[0][3] >= 0:  # text pairs: token type 1 from the second segment to the last real token
            firsts = np.array([example[3] for example in examples])[:, None]
            batch["token_type_ids"] = torch.from_numpy((np.arange(longest)[None, :] >= firsts) * attention_mask)
        return batch


class LengthBucketBatchSampler(Sampler[list[int]]):
    """Batches of similar length that stay random.

    Training: shuffle all examples, cut them into chunks of `bucket_batches` batches, sort each chunk by
    length, cut it into batches and shuffle the batches. Each batch is a random draw from a random
    chunk, so learning is as good as plain shuffling while padding nearly disappears.
    Evaluation (`shuffle=False`): examples sorted by length, longest first.
    Under several processes each rank takes every `num_replicas`-th training batch, or every
    `num_replicas`-th evaluation example (so every rank has work and none is seen twice).
    """

    def __init__(
        self,
        lengths: np.ndarray,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        bucket_batches: int = 50,
        drop_last: bool = False,
        num_replicas: int = 1,
        rank: int = 0,
        current_epoch: Callable[[], int] | None = None,
    ) -> None:
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


def loader(
    dataset: TokenizedSplit,
    sampler: Sampler[list[int]],
    pad_token_id: int,
    pad_to_multiple_of: int = PAD_TO_MULTIPLE_OF,
    num_workers: int = 0,
    seed: int = 0,
    by_text: bool = False,
) -> DataLoader:
    """A DataLoader over `sampler`'s batches. It has its own generator: iterating must not draw from
    torch's global random state (dropout's)."""
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=PadCollator(pad_token_id, pad_to_multiple_of, by_text),
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        generator=torch.Generator().manual_seed(seed),
    )
