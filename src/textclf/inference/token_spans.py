"""Texts as tokens with their character spans, cut exactly as prediction cuts them (`tokenization.encode` and
`encode_pairs`: the same ids, truncation mode and pair truncation), so that an explanation's tokens are the ones
the model read and each points at the characters it came from."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from transformers import PreTrainedTokenizerBase

from textclf.data.tokenization import FULL


@dataclass
class TokenSpans:
    """One text (or pair of texts) as the model reads it: token ids with the special tokens, each token's
    character span `[start, end)` in its own text, and its segment (0: the text, 1: the pair's second text,
    -1: a special token, which has no span)."""

    ids: np.ndarray
    spans: np.ndarray  # [tokens, 2]
    segments: np.ndarray
    first_segment: int  # the positions of token type 0, as `encode_pairs` counts them (all, for RoBERTa)


def spans_of(encoding) -> TokenSpans:  # noqa: ANN001 (a tokenizers.Encoding)
    segments = np.array([-1 if s is None else s for s in encoding.sequence_ids], dtype=np.int64)
    ids, spans = np.array(encoding.ids, dtype=np.int64), np.array(encoding.offsets, dtype=np.int64)
    return TokenSpans(ids, spans, segments, encoding.type_ids.count(0))


def head_and_tail(full: TokenSpans, tokenizer: PreTrainedTokenizerBase, max_length: int) -> TokenSpans:
    """`head_tail` truncation as `tokenization.encode` does it: a quarter head, three quarters tail."""
    if len(full.ids) <= max_length:
        return full
    suffix = tokenizer.num_special_tokens_to_add() - 1
    head = (max_length - suffix - 1) // 4
    tail = max_length - suffix - 1 - head
    keep = np.r_[0 : 1 + head, len(full.ids) - suffix - tail : len(full.ids)]
    return TokenSpans(full.ids[keep], full.spans[keep], full.segments[keep], len(keep))


def token_spans(
    texts: list[str],
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    truncation: str,
    pairs: list[str] | None = None,
    pair_truncation: str = "longest_first",
) -> list[TokenSpans]:
    """Every text's tokens and spans; `truncation="none"` keeps whole texts (windows are cut later)."""
    if pairs is not None:
        tokenizer.truncation_side = "left" if truncation == "tail" else "right"
        encoded = tokenizer(
            texts, pairs, truncation=pair_truncation, max_length=max_length, return_offsets_mapping=True
        )
        return [spans_of(encoding) for encoding in encoded.encodings]
    if truncation in (FULL, "head_tail"):
        encoded = tokenizer(texts, truncation=False, verbose=False, return_offsets_mapping=True)
        full = [spans_of(encoding) for encoding in encoded.encodings]
        return full if truncation == FULL else [head_and_tail(one, tokenizer, max_length) for one in full]
    tokenizer.truncation_side = "left" if truncation == "tail" else "right"
    encoded = tokenizer(texts, truncation=True, max_length=max_length, return_offsets_mapping=True)
    return [spans_of(encoding) for encoding in encoded.encodings]
