"""Contrastive pairs drawn on the fly: the right similarities, the same pairs again, memory linear in the examples."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from textclf.data.pairs import PairBatchSampler, PairCollator, PairDrawer
from textclf.model.contrastive import cosine_loss, pair_similarity
from textclf.model.network import mean_pooled


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


class MeanOfEmbeddings(torch.nn.Module):
    """An encoder small enough to compare gradients exactly: the mean of its token embeddings."""

    def __init__(self) -> None:
        super().__init__()
        self.embeddings = torch.nn.Embedding(50, 8)

    def pooled(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return mean_pooled(self.embeddings(input_ids), attention_mask)


def test_an_example_met_twice_in_a_batch_is_encoded_once_with_the_same_loss_and_gradient() -> None:
    labels = np.repeat(np.arange(2), 8)  # 16 examples: 16 pairs meet most of them twice
    rng = np.random.default_rng(0)
    tokens = [rng.integers(1, 50, rng.integers(3, 12)) for _ in labels]
    drawer, net = PairDrawer(labels, seed=3), MeanOfEmbeddings()
    pairs = [drawer.pair(0, p) for p in range(16)]
    batch = PairCollator(pad_token_id=0, pad_to_multiple_of=8)(
        [((a, tokens[a]), (b, tokens[b]), similarity) for a, b, similarity in pairs]
    )
    assert len(batch["input_ids"]) == len({number for a, b, _ in pairs for number in (a, b)}) < 2 * len(pairs)
    loss = cosine_loss(pair_similarity(net, **{k: v for k, v in batch.items() if k != "labels"}), batch["labels"])
    (deduplicated,) = torch.autograd.grad(loss, net.embeddings.weight)

    def side(numbers: list[int]) -> torch.Tensor:  # every side encoded on its own
        return torch.stack([net.pooled(torch.tensor(tokens[n])[None], torch.ones(1, len(tokens[n]))) for n in numbers])

    reference = cosine_loss(
        F.cosine_similarity(side([a for a, _, _ in pairs]), side([b for _, b, _ in pairs]), dim=-1).squeeze(1),
        batch["labels"],
    )
    assert loss.item() == pytest.approx(reference.item(), rel=1e-5)
    (expected,) = torch.autograd.grad(reference, net.embeddings.weight)
    torch.testing.assert_close(deduplicated, expected, rtol=1e-4, atol=1e-6)
