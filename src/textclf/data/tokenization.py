"""Texts to token ids: fast tokenizers, the truncation modes, the on-disk token cache, and tokenizers
packed into checkpoints as plain strings."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from rich.progress import Progress
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from textclf.data.settings import PAIR_TRUNCATIONS, TRUNCATIONS
from textclf.errors import DataError, first_line
from textclf.pretrained import resolve_pretrained

CACHE_FORMAT = 3  # bump when the cached arrays or the key change meaning
TOKENIZE_CHUNK = 10_000
FULL = "none"  # tokenize_cached's truncation for whole texts (windows.py cuts them after the cache)


def load_tokenizer(name_or_path: str) -> PreTrainedTokenizerBase:
    try:
        tokenizer = AutoTokenizer.from_pretrained(resolve_pretrained(name_or_path))
    except (OSError, ValueError, KeyError) as error:
        raise DataError(f"data.tokenizer: {name_or_path}: {first_line(error)}") from None
    if not tokenizer.is_fast:
        raise DataError(f"tokenizer '{name_or_path}' has no fast (Rust) version; textclf needs one")
    return tokenizer


def check_truncation(truncation: str, pairs: bool = False, pair_truncation: str = "longest_first") -> None:
    if truncation not in TRUNCATIONS:
        raise DataError(f"data.truncation must be one of {', '.join(TRUNCATIONS)}, not '{truncation}'")
    if pair_truncation not in PAIR_TRUNCATIONS:
        raise DataError(f"data.pair_truncation must be one of {', '.join(PAIR_TRUNCATIONS)}, not '{pair_truncation}'")
    if pairs and truncation == "head_tail":
        raise DataError("data.truncation=head_tail is for single texts; text pairs are cut at their head or tail")


def uses_token_types(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether the model tells the two texts of a pair apart by token type ids (BERT does, RoBERTa not)."""
    return "token_type_ids" in tokenizer.model_input_names


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str:
    """Changes whenever the tokenizer would produce other ids. The backend's truncation and padding
    state is left out: calling the tokenizer changes it (the truncation mode is part of the cache key)."""
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    spec.pop("truncation", None), spec.pop("padding", None)
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def encode_pairs(
    texts: list[str],
    pairs: list[str],
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    truncation: str = "head",
    pair_truncation: str = "longest_first",
) -> tuple[list[list[int]], list[int]]:
    """Token ids of text pairs as the tokenizer joins them ([CLS] a [SEP] b [SEP] for BERT), at most
    `max_length`, the longer text shortened first (`longest_first`) or only the second (`only_second`), at
    its head or tail, and the length of the first segment: the positions from there on have token type 1."""
    tokenizer.truncation_side = "left" if truncation == "tail" else "right"
    try:
        encoded = tokenizer(
            texts,
            pairs,
            truncation=pair_truncation,
            max_length=max_length,
            return_attention_mask=False,
            return_token_type_ids=True,
        )
        too_long = any(len(ids) > max_length for ids in encoded["input_ids"])
    except Exception:  # the Rust tokenizer's error where the second text cannot be cut enough
        if pair_truncation != "only_second":
            raise
        too_long = True
    if too_long:  # only_second: a first text that leaves no room for the second
        raise DataError(
            f"data.pair_truncation=only_second: a first text leaves no room for the second within "
            f"data.max_length={max_length}; use longest_first or a larger max_length"
        )
    # models without token types get all zeros: the whole pair is the first segment
    return encoded["input_ids"], [types.count(0) for types in encoded["token_type_ids"]]


def encode(
    texts: list[str], tokenizer: PreTrainedTokenizerBase, max_length: int, truncation: str = "head"
) -> list[list[int]]:
    """Token ids with special tokens, at most `max_length` of them. Long texts keep their beginning
    (`head`), their end (`tail`), or both: a quarter head and three quarters tail (`head_tail`, the best
    of Sun et al. 2019's recipes for long documents); `none`: the whole text."""
    if truncation not in ("head_tail", FULL):
        tokenizer.truncation_side = "left" if truncation == "tail" else "right"
        return tokenizer(
            texts, truncation=True, max_length=max_length, return_attention_mask=False, return_token_type_ids=False
        )["input_ids"]
    full = tokenizer(texts, truncation=False, verbose=False, return_attention_mask=False, return_token_type_ids=False)[
        "input_ids"
    ]
    if truncation == FULL:
        return full
    suffix = tokenizer.num_special_tokens_to_add() - 1  # [CLS] in front, the rest ([SEP]) behind
    head = (max_length - suffix - 1) // 4
    tail = max_length - suffix - 1 - head
    return [ids if len(ids) <= max_length else ids[: 1 + head] + ids[len(ids) - suffix - tail :] for ids in full]


def text_chunks(texts: pd.Series | list[str]) -> list[pd.Series]:
    """The texts in slices of `TOKENIZE_CHUNK`, so they become Python strings one slice at a time."""
    texts = pd.Series(texts, dtype="str") if isinstance(texts, list) else texts
    return [texts.iloc[start : start + TOKENIZE_CHUNK] for start in range(0, len(texts), TOKENIZE_CHUNK)]


def cache_entry(
    cache_dir: str | Path,
    chunks: list[pd.Series],
    pair_chunks: list[pd.Series] | None,
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    truncation: str,
    fingerprint: str | None,
    pair_truncation: str,
) -> Path:
    """The cache folder of these texts under these settings: every setting that changes the ids is in
    the key, and the texts are hashed unless the caller's `fingerprint` already identifies them."""
    pairs = pair_chunks is not None
    key = [CACHE_FORMAT, tokenizer_fingerprint(tokenizer), max_length, truncation, fingerprint, pairs]
    if pairs and pair_truncation != "longest_first":  # the keys of earlier entries stay valid
        key.append(pair_truncation)
    digest = hashlib.sha256(json.dumps(key).encode())
    for chunk in (chunks + (pair_chunks or [])) if fingerprint is None else ():
        digest.update("\0".join(chunk.tolist()).encode("utf-8", "surrogatepass") + b"\1")
    return Path(cache_dir) / digest.hexdigest()[:32]


def load_entry(entry: Path, pairs: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray | None] | None:
    """A complete cache entry's arrays (the token ids memory-mapped), or None where there is none yet:
    the offsets are written last, so their presence means the entry is whole."""
    if not (entry / "offsets.npy").is_file():
        return None
    segments = np.load(entry / "segments.npy") if pairs else None
    return np.load(entry / "input_ids.npy", mmap_mode="r"), np.load(entry / "offsets.npy"), segments


def save_entry(entry: Path, input_ids: np.ndarray, offsets: np.ndarray, segments: np.ndarray | None) -> None:
    """Writes the entry to a temporary folder and renames it, so a killed run never leaves half an entry."""
    temporary = entry.with_name(f"{entry.name}.tmp-{os.getpid()}")
    temporary.mkdir(parents=True, exist_ok=True)
    np.save(temporary / "input_ids.npy", input_ids)
    if segments is not None:
        np.save(temporary / "segments.npy", segments)
    np.save(temporary / "offsets.npy", offsets)
    try:
        os.replace(temporary, entry)
    except OSError:  # another process wrote the same entry first
        shutil.rmtree(temporary, ignore_errors=True)


def encode_chunks(
    chunks: list[pd.Series],
    pair_chunks: list[pd.Series] | None,
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    truncation: str,
    pair_truncation: str,
    description: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Token ids (flat), offsets and, for pairs, first-segment lengths: one flat array per chunk, not
    one small array per text. A progress bar only for corpora large enough to wait for."""
    pieces, lengths, firsts = [], [], []
    total = sum(len(chunk) for chunk in chunks)
    with Progress(transient=True, disable=total < 4 * TOKENIZE_CHUNK) as progress:
        task = progress.add_task(description, total=total)
        for number, chunk in enumerate(chunks):
            if pair_chunks is None:
                encoded = encode(chunk.tolist(), tokenizer, max_length, truncation)
            else:
                encoded, first = encode_pairs(
                    chunk.tolist(), pair_chunks[number].tolist(), tokenizer, max_length, truncation, pair_truncation
                )
                firsts += first
            chunk_lengths = [len(ids) for ids in encoded]
            lengths += chunk_lengths
            pieces.append(np.fromiter(itertools.chain.from_iterable(encoded), dtype=np.int32, count=sum(chunk_lengths)))
            progress.advance(task, len(encoded))
    input_ids = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int32)
    offsets = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)])
    segments = np.array(firsts, dtype=np.int32) if pair_chunks is not None else None
    return input_ids, offsets, segments


def tokenize_cached(
    texts: pd.Series | list[str],
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    cache_dir: str | Path | None,
    truncation: str = "head",
    description: str = "tokenizing",
    fingerprint: str | None = None,
    pairs: pd.Series | list[str] | None = None,
    pair_truncation: str = "longest_first",
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Token ids (flat), offsets and, for text pairs (`pairs`: the second text of each), the length of
    each first segment; from the disk cache when the same texts, tokenizer, `max_length` and truncation
    (and pair truncation) were tokenized before; `truncation="none"` keeps whole texts (for windows). The
    texts are identified by their `fingerprint` where the caller knows one (a Hugging Face dataset's), else
    by hashing them. Texts become Python strings one chunk at a time, so a large corpus is never held as
    Python objects."""
    chunks = text_chunks(texts)
    pair_chunks = text_chunks(pairs) if pairs is not None else None
    entry = None
    if cache_dir:  # no cache (prediction): no key to compute
        entry = cache_entry(
            cache_dir, chunks, pair_chunks, tokenizer, max_length, truncation, fingerprint, pair_truncation
        )
        cached = load_entry(entry, pairs is not None)
        if cached is not None:
            return cached
    tokenized = encode_chunks(chunks, pair_chunks, tokenizer, max_length, truncation, pair_truncation, description)
    if entry is not None:
        save_entry(entry, *tokenized)
    return tokenized


def tokenizer_files(tokenizer: PreTrainedTokenizerBase) -> dict[str, str]:
    """The tokenizer as {file name: text}, to travel inside a checkpoint as plain strings."""
    with tempfile.TemporaryDirectory() as directory:
        tokenizer.save_pretrained(directory)
        return {path.name: path.read_text(encoding="utf-8") for path in Path(directory).iterdir() if path.is_file()}


def tokenizer_from_files(files: dict[str, str]) -> PreTrainedTokenizerBase:
    with tempfile.TemporaryDirectory() as directory:
        for name, text in files.items():
            (Path(directory) / Path(name).name).write_text(text, encoding="utf-8")
        return AutoTokenizer.from_pretrained(directory)
