"""Pairs of training examples for contrastive training (`strategy=contrastive`), drawn on the fly.

SetFit's recipe: in each of `iterations` passes over the training examples, every example (the anchor) is
paired once with an example of its class (similarity 1) and once with an example of another class
(similarity 0). The pairs are never listed: pair `p` of an epoch is drawn from (seed, epoch, p) when its
batch is made, so memory holds the examples' labels and one pass's order, whatever the number of pairs,
and a resumed run draws the same pairs in the same order. A multi-label example's partner of similarity 1
shares one of its labels; of similarity 0, none.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch.utils.data import Sampler

from textclf.data.batching import PadCollator, TokenizedSplit


class PairDrawer:
    """Draws pair `p`'s two examples and their similarity from the examples' labels (class indices, or
    multi-hot rows)."""

    def __init__(self, labels: np.ndarray, seed: int) -> None:
        self.multi_hot = labels.ndim == 2
        self.seed, self.count = seed, len(labels)
        self.labels = labels
        classes = labels.argmax(1) if self.multi_hot else labels
        # each class's examples: O(examples) memory, one partner drawn in O(1)
        self.members = {int(c): np.flatnonzero(classes == c) for c in np.unique(classes)}
        self.classes = classes.astype(np.int64)
        if len(self.members) < 2:
            raise ValueError("contrastive training needs examples of at least two classes")
        self.order_of: tuple[tuple[int, int], np.ndarray] | None = None

    def anchors(self, epoch: int, iteration: int) -> np.ndarray:
        """The order of one pass over the examples (cached: a batch's pairs come from one or two passes)."""
        key = (epoch, iteration)
        if self.order_of is None or self.order_of[0] != key:
            self.order_of = (key, np.random.default_rng([self.seed, epoch, iteration]).permutation(self.count))
        return self.order_of[1]

    def pair(self, epoch: int, p: int) -> tuple[int, int, float]:
        iteration, position = divmod(p, 2 * self.count)
        anchor = int(self.anchors(epoch, iteration)[position // 2])
        similar = position % 2 == 0
        rng = np.random.default_rng([self.seed, epoch, p, 1])
        own = self.classes[anchor]
        if self.multi_hot:
            return anchor, self.multi_label_partner(anchor, similar, rng), float(similar)
        if similar:
            members = self.members[own]
            return anchor, int(members[rng.integers(len(members))]), 1.0
        other = rng.integers(self.count - len(self.members[int(own)]))  # uniform over the other classes' examples
        for c, members in self.members.items():
            if c == own:
                continue
            if other < len(members):
                return anchor, int(members[other]), 0.0
            other -= len(members)
        raise AssertionError("unreachable")

    def multi_label_partner(self, anchor: int, similar: bool, rng: np.random.Generator) -> int:
        """A partner that shares a label with the anchor (or none); a few draws, then the anchor's class."""
        own = self.labels[anchor].astype(bool)
        for _ in range(32):
            partner = int(rng.integers(self.count))
            if bool((self.labels[partner].astype(bool) & own).any()) == similar:
                return partner
        members = self.members[int(self.classes[anchor])]
        return int(members[rng.integers(len(members))]) if similar else int(rng.integers(self.count))


class PairBatchSampler(Sampler[list[int]]):
    """Batches of pair numbers for one epoch: `iterations` passes of 2 pairs per example, in order (the
    randomness is in the drawing); a resumed run skips the batches its epoch already trained on."""

    def __init__(self, examples: int, iterations: int, batch_size: int) -> None:
        self.pairs, self.batch_size, self.skip = 2 * iterations * examples, batch_size, 0

    def skip_once(self, batches: int) -> None:
        self.skip = batches

    def __iter__(self) -> Iterator[list[int]]:
        start, self.skip = self.skip, 0
        for first in range(start * self.batch_size, self.pairs, self.batch_size):
            yield list(range(first, min(first + self.batch_size, self.pairs)))

    def __len__(self) -> int:
        return -(-self.pairs // self.batch_size)


# (example number, token ids) of each side, and the target similarity
Pair = tuple[tuple[int, np.ndarray], tuple[int, np.ndarray], float]


class PairDataset(torch.utils.data.Dataset):
    """Pair `p` of the current epoch: its two examples (their numbers and tokens) and their similarity."""

    def __init__(self, split: TokenizedSplit, drawer: PairDrawer, epoch: Callable[[], int]) -> None:
        self.split, self.drawer, self.epoch = split, drawer, epoch

    def __getitem__(self, p: int) -> Pair:
        anchor, partner, similarity = self.drawer.pair(self.epoch(), p)
        return (anchor, self.split[anchor][0]), (partner, self.split[partner][0]), similarity


class PairCollator:
    """Each distinct example of a batch's pairs padded once (one forward pass), with the rows of each pair's
    anchor (`anchor_rows`) and partner (`partner_rows`) among them, and the target similarities as `labels`.
    Each anchor is in two pairs (a partner of its class and one of another), and with few examples partners
    repeat: 16 pairs hold at most 24 distinct examples, about 13 when there are 16 examples in all, and an
    example met twice is encoded once. The loss, and with it the gradient, is the same sum over the pairs
    (but for dropout: one mask per distinct example)."""

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int) -> None:
        self.pad = PadCollator(pad_token_id, pad_to_multiple_of)

    def __call__(self, pairs: list[Pair]) -> dict[str, torch.Tensor]:
        rows: dict[int, int] = {}
        examples = []
        for number, ids in (side for anchor, partner, _ in pairs for side in (anchor, partner)):
            if number not in rows:
                rows[number] = len(examples)
                examples.append((ids, 0, 0, -1))
        batch = self.pad(examples)
        return {
            "input_ids": batch["input_ids"],
            "attention_mask": batch["attention_mask"],
            "anchor_rows": torch.tensor([rows[anchor[0]] for anchor, _, _ in pairs]),
            "partner_rows": torch.tensor([rows[partner[0]] for _, partner, _ in pairs]),
            "labels": torch.tensor([similarity for *_, similarity in pairs], dtype=torch.float32),
        }
