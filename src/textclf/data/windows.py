"""Long texts as sliding windows (`data.long_texts=window`): a text longer than `max_length` becomes
several windows of `max_length` tokens (special tokens included) that overlap by `window_stride` tokens.
Training takes every window (or the first `max_windows`) as an example with its text's label; evaluation
and prediction batch whole texts and aggregate their windows' logits (`mean` or `max`), so metrics and
outputs have one row per text."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Sampler

from textclf.data.settings import AGGREGATIONS, LONG_TEXTS
from textclf.errors import DataError


def check_windows(
    long_texts: str,
    window_stride: int,
    max_windows: int | None,
    window_aggregation: str,
    max_length: int,
    pairs: bool = False,
    specials: int = 0,
) -> None:
    """One-line errors for window settings that cannot work; `specials`: the special tokens of each window
    (known once the tokenizer is loaded)."""
    if long_texts not in LONG_TEXTS:
        raise DataError(f"data.long_texts must be one of {', '.join(LONG_TEXTS)}, not '{long_texts}'")
    if window_aggregation not in AGGREGATIONS:
        raise DataError(f"data.window_aggregation must be one of {', '.join(AGGREGATIONS)}, not '{window_aggregation}'")
    if max_windows is not None and max_windows < 1:
        raise DataError(f"data.max_windows must be at least 1 (or null: every window), not {max_windows}")
    if long_texts != "window":
        return
    if pairs:
        raise DataError(
            "data.long_texts=window is for single texts; text pairs are truncated (data.long_texts=truncate)"
        )
    if window_stride < 0:
        raise DataError(f"data.window_stride is the overlap of windows in tokens: at least 0, not {window_stride}")
    if window_stride >= max_length - specials:
        raise DataError(
            f"data.window_stride={window_stride} must be below data.max_length={max_length} minus the "
            f"{specials} special tokens of each window ({max_length - specials})"
        )


def special_tokens(tokenizer) -> tuple[int, int]:  # noqa: ANN001 (a PreTrainedTokenizerBase)
    """How many special tokens a single text gets in front ([CLS]) and behind ([SEP])."""
    total = tokenizer.num_special_tokens_to_add()
    return min(total, 1), total - min(total, 1)


def cut_windows(
    input_ids: np.ndarray,
    offsets: np.ndarray,
    max_length: int,
    stride: int,
    prefix: int,
    suffix: int,
    max_windows: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Windows of full-length token ids (flat `input_ids` and `offsets`, special tokens included): each
    window is the text's first `prefix` ids, up to `max_length - prefix - suffix` tokens of its body and
    its last `suffix` ids; consecutive windows share `stride` body tokens; the last one ends at the text's
    end. Returns the windows' flat ids and offsets and, per window, the index of its text. Deterministic."""
    body = max_length - prefix - suffix
    step = body - stride
    pieces, lengths, texts = [], [], []
    for text in range(len(offsets) - 1):
        ids = np.asarray(input_ids[offsets[text] : offsets[text + 1]])
        if len(ids) <= max_length:
            pieces.append(ids)
            lengths.append(len(ids))
            texts.append(text)
            continue
        head, content, tail = ids[:prefix], ids[prefix : len(ids) - suffix], ids[len(ids) - suffix :]
        count = 1 + -(-(len(content) - body) // step)
        if max_windows is not None:
            count = min(count, max_windows)
        for window in range(count):
            start = min(window * step, len(content) - body)  # the last window ends at the text's end
            pieces += [head, content[start : start + body], tail]
            lengths.append(max_length)
            texts.append(text)
    flat = np.concatenate(pieces).astype(np.int32) if pieces else np.zeros(0, dtype=np.int32)
    return flat, np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]), np.array(texts, dtype=np.int64)


def aggregate(logits: torch.Tensor, window_text: torch.Tensor, texts: int, how: str = "mean") -> torch.Tensor:
    """Logits per text [texts, labels] from logits per window and each window's text (0 … texts-1)."""
    index = window_text.to(logits.device).unsqueeze(-1).expand_as(logits)
    out = torch.zeros((texts, logits.shape[-1]), dtype=logits.dtype, device=logits.device)
    return out.scatter_reduce(0, index, logits, reduce="mean" if how == "mean" else "amax", include_self=False)


class TextBatchSampler(Sampler[list[int]]):
    """Evaluation batches of whole texts: every window of a text is in the same batch, so its logits can be
    aggregated right after the forward pass. Texts are sorted by length, longest first, and batched up to
    `batch_size` windows (a text with more windows is a batch of its own). Under several processes each rank
    takes every `num_replicas`-th text: no text is split across ranks."""

    def __init__(
        self, text_index: np.ndarray, lengths: np.ndarray, batch_size: int, num_replicas: int = 1, rank: int = 0
    ) -> None:
        self.text_index, self.lengths, self.batch_size = text_index, lengths, batch_size
        self.num_replicas, self.rank = num_replicas, rank

    def set_epoch(self, epoch: int) -> None:  # the order never changes
        pass

    def _batches(self) -> list[list[int]]:
        if len(self.text_index) == 0:
            return []
        texts = int(self.text_index.max()) + 1
        starts = np.searchsorted(self.text_index, np.arange(texts + 1))  # windows are grouped by text
        tokens = np.add.reduceat(self.lengths, starts[:-1]) if len(self.lengths) else np.zeros(texts)
        order = np.argsort(-tokens, kind="stable")[self.rank :: self.num_replicas]
        batches, batch = [], []
        for text in order:
            windows = list(range(starts[text], starts[text + 1]))
            if batch and len(batch) + len(windows) > self.batch_size:
                batches.append(batch)
                batch = []
            batch += windows
        return batches + ([batch] if batch else [])

    def __iter__(self) -> Iterator[list[int]]:
        yield from self._batches()

    def __len__(self) -> int:
        return len(self._batches())
