"""Contrastive pairs drawn on the fly: the right similarities, the same pairs again, memory linear in the examples."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from textclf.data.pairs import PairBatchSampler, PairDrawer


def drawn(labels: np.ndarray, iterations: int, batches: int | None = None) -> list[tuple[int, int, float]]:
    drawer = PairDrawer(labels, seed=7)
    sampler = PairBatchSampler(len(labels), iterations, batch_size=16)
    pairs = []
    for number, batch in enumerate(sampler):
        if batches is not None and number == batches:
            break
        pairs += [drawer.pair(0, p) for p in batch]
    return pairs


def test_every_example_is_paired_once_with_its_class_and_once_with_another_in_each_iteration() -> None:
    labels = np.repeat(np.arange(3), [5, 8, 3])  # unequal classes
    pairs = drawn(labels, iterations=4)
    assert len(pairs) == 2 * 4 * len(labels)
    for anchor, partner, similarity in pairs:
        assert (labels[anchor] == labels[partner]) == (similarity == 1.0)
    anchors = [anchor for anchor, _, similarity in pairs if similarity == 1.0]
    assert sorted(anchors) == sorted(list(range(len(labels))) * 4)
    assert pairs == drawn(labels, iterations=4)  # drawn again from the seed: a resumed run sees the same pairs


def test_multi_label_partners_share_a_label_or_none() -> None:
    rng = np.random.default_rng(0)
    labels = (rng.random((40, 4)) < 0.35).astype(np.float32)
    labels[labels.sum(1) == 0, 0] = 1
    for anchor, partner, similarity in drawn(labels, iterations=2):
        shared = bool((labels[anchor].astype(bool) & labels[partner].astype(bool)).any())
        assert shared == (similarity == 1.0)


def peak_bytes(examples: int) -> int:
    labels = np.random.default_rng(0).integers(0, 4, examples)
    tracemalloc.start()
    drawn(labels, iterations=20, batches=200)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def test_memory_grows_with_the_examples_not_with_the_pairs() -> None:
    """SetFit lists its pairs; 4x the examples is 16x the possible pairs and 4x the drawn ones. Here the
    memory holds the labels and one pass's order: 4x the examples costs at most about 4x."""
    small, large = peak_bytes(20_000), peak_bytes(80_000)
    assert large < 5 * small, (small, large)


def test_one_class_is_refused() -> None:
    with pytest.raises(ValueError, match="at least two classes"):
        PairDrawer(np.zeros(10, dtype=np.int64), seed=0)
