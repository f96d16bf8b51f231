"""`select(cfg)`, behind `textclf-select`: which texts of an unlabelled pool to label next.

    textclf-select ckpt_path=CKPT input=pool.csv text_column=text k=500 output=next.csv

The pool (text lines, CSV/TSV/JSONL/Parquet) streams through `chunk_size` rows at a time and only a bounded
set of candidates is kept, so a pool larger than memory works. Each text gets an uncertainty score from
the checkpoint's probabilities (`margin`, `entropy`, `least_confidence`); `diverse` keeps the
`candidates x k` most uncertain (by margin) and picks k of them spread over the embedding space, each
next one the most uncertain far from those already picked; `random` is the baseline. Texts of the
checkpoint's own data (or of `exclude_file`) and repeats within the pool are skipped. The output has the
input's columns plus `row` (0-based in the input) and `selection_score`, in selection order. Needs only
the inference layer: no Lightning.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from textclf.atomic import write_atomically
from textclf.curation.pool import Candidates, known_texts
from textclf.curation.settings import STRATEGIES
from textclf.errors import DataError, SettingError
from textclf.inference.embeddings import logits_and_embeddings
from textclf.inference.predictor import Predictor
from textclf.inference.progress import TextProgress
from textclf.inference.reading import count_rows, frame_chunks
from textclf.log import log

OUTPUTS = (".csv", ".jsonl", ".parquet")


def uncertainty(probabilities: np.ndarray, strategy: str, multi_label: bool) -> np.ndarray:
    """How unsure the model is of each text, higher = more (`diverse` ranks its candidates by margin)."""
    p = np.clip(probabilities.astype(np.float64), 1e-12, 1.0)
    if multi_label:  # each label a yes/no question; averaged over the labels
        if strategy == "entropy":
            return (-(p * np.log(p) + (1 - p) * np.log(np.clip(1 - p, 1e-12, 1)))).mean(1)
        sure = np.maximum(p, 1 - p)
        return (2 * (1 - sure) if strategy in ("margin", "diverse") else 1 - sure).mean(1)
    if strategy == "entropy":
        return -(p * np.log(p)).sum(1)
    if strategy == "least_confidence":
        return 1 - p.max(1)
    top_two = np.sort(p, axis=1)[:, -2:] if p.shape[1] > 1 else np.hstack([np.zeros_like(p), p])
    return 1 - (top_two[:, 1] - top_two[:, 0])


def spread_order(scores: np.ndarray, embeddings: np.ndarray, k: int) -> np.ndarray:
    """k positions, each next one maximising uncertainty x cosine distance to the nearest one picked (a
    weighted k-center greedy over the centred, unit-length embeddings), starting from the most uncertain."""
    centred = embeddings - embeddings.mean(0)
    unit = centred / np.maximum(np.linalg.norm(centred, axis=1, keepdims=True), 1e-12)
    weights = np.maximum(scores, 1e-6)
    picked = [int(np.argmax(scores))]
    nearest = 1 - unit @ unit[picked[0]]
    for _ in range(min(k, len(scores)) - 1):
        gain = weights * np.maximum(nearest, 0)
        gain[picked] = -1
        picked.append(int(np.argmax(gain)))
        nearest = np.minimum(nearest, 1 - unit @ unit[picked[-1]])
    return np.array(picked, dtype=np.int64)


def check_settings(cfg: DictConfig, predictor: Predictor | None = None) -> None:
    """k, the strategy and the output, before the pool is read."""
    k = cfg.k
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise SettingError(f"k must be a whole number of at least 1, not {k!r}")
    if cfg.strategy not in STRATEGIES:
        raise SettingError(f"strategy must be one of {', '.join(STRATEGIES)}, not '{cfg.strategy}'")
    if Path(str(cfg.output)).suffix.lower() not in OUTPUTS:
        raise DataError(f"{cfg.output}: unknown output type (use {', '.join(OUTPUTS)})")
    if predictor is not None and predictor.task.regression and cfg.strategy != "random":
        raise SettingError(
            f"strategy={cfg.strategy} ranks by the uncertainty of class probabilities, which a regression "
            "model has none of: use strategy=random"
        )


def scored_chunks(cfg: DictConfig, predictor: Predictor, columns: list[str]) -> Candidates:
    """The pool streamed chunk by chunk into the bounded set of its best candidates."""
    strategy, k = cfg.strategy, int(cfg.k)
    capacity = k * int(cfg.candidates) if strategy == "diverse" else k
    candidates, known = Candidates(capacity, columns), known_texts(cfg, predictor, columns)
    rng, start = np.random.default_rng(cfg.seed), 0
    with TextProgress("ranking", count_rows(str(cfg.input))) as progress:
        for frame in frame_chunks(str(cfg.input), columns, int(cfg.chunk_size)):
            chunk = candidates.new_rows(frame, start, known)
            start += len(frame)
            progress.advance(len(frame))
            if chunk.empty:
                continue
            texts = [str(text) for text in chunk[columns[0]]]
            pairs = [str(text) for text in chunk[columns[1]]] if len(columns) > 1 else None
            embeddings = None
            if strategy == "random":
                scores = rng.random(len(chunk))
            else:
                if strategy == "diverse":
                    logits, embeddings = logits_and_embeddings(predictor, texts, pairs)
                else:
                    logits = predictor.text_logits(texts, pairs=pairs)
                probabilities = predictor.probabilities(logits)
                scores = uncertainty(probabilities, strategy, predictor.task.multi_label)
            candidates.add(chunk, scores, embeddings)
    if start == 0 or candidates.seen == 0:
        raise DataError(f"{cfg.input}: no texts to rank" + (" (every text is known already)" if start else ""))
    return candidates


def write_selection(output: Path, selected: pd.DataFrame) -> None:
    suffix = output.suffix.lower()
    if suffix == ".parquet":
        write_atomically(output, lambda path: selected.to_parquet(path, index=False))
    elif suffix == ".jsonl":
        write_atomically(output, lambda path: selected.to_json(path, orient="records", lines=True, force_ascii=False))
    else:
        write_atomically(output, lambda path: selected.to_csv(path, index=False))


def select(cfg: DictConfig) -> dict[str, Any]:
    """Rank the pool, write the k texts to label next in selection order; returns counts."""
    check_settings(cfg)
    predictor = Predictor.from_checkpoint(
        cfg.ckpt_path, batch_size=cfg.batch_size, precision=cfg.precision, device=cfg.device
    )
    check_settings(cfg, predictor)
    columns = [cfg.text_column]
    if predictor.pairs:
        columns.append(cfg.get("text_pair_column") or predictor.text_pair_column)
    candidates = scored_chunks(cfg, predictor, columns)
    frame, scores = candidates.frame, candidates.scores
    if cfg.strategy == "diverse":
        order = spread_order(scores, candidates.embeddings, int(cfg.k))
    else:
        order = np.lexsort((frame["row"].to_numpy(), -scores))[: int(cfg.k)]
    selected = frame.iloc[order].assign(selection_score=np.round(scores[order], 6)).reset_index(drop=True)
    if len(selected) < cfg.k:
        log.warning(f"{cfg.input}: only {len(selected)} new texts to choose from, fewer than k={cfg.k}")
    write_selection(Path(str(cfg.output)), selected)
    log.info(
        f"selected {len(selected)} of {candidates.seen} new texts ({candidates.skipped} known or repeated skipped) "
        f"by {cfg.strategy} -> {cfg.output}"
    )
    return {"selected": len(selected), "ranked": candidates.seen, "skipped": candidates.skipped}
