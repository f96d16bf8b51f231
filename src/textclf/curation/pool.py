"""The unlabelled pool as `textclf-select` streams it: the texts it must skip (those of the checkpoint's own
data, or of `exclude_file`) and the bounded set of the best candidates seen so far."""

from __future__ import annotations

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from textclf.data import splits
from textclf.errors import TextclfError
from textclf.inference.predictor import Predictor
from textclf.inference.reading import frame_chunks
from textclf.log import log

ADDED = ("row", "selection_score")  # the columns the output adds to the input's


def keys_of(frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    """What identifies a text (a pair: both texts) for skipping."""
    keys = frame[columns[0]].astype(str)
    for column in columns[1:]:
        keys = keys + "\x1f" + frame[column].astype(str)
    return keys


def known_texts(cfg: DictConfig, predictor: Predictor, columns: list[str]) -> set[str]:
    """The texts already labelled: `exclude_file`'s, or every split of the data the checkpoint was trained
    on (when it can still be read); none with `skip_known=false`."""
    if cfg.get("exclude_file"):
        chunks = frame_chunks(str(cfg.exclude_file), columns, int(cfg.chunk_size), all_columns=False)
        return {key for chunk in chunks for key in keys_of(chunk, columns)}
    if not cfg.get("skip_known", True) or not predictor.model.data_hparams:
        return set()
    settings = predictor.model.data_hparams
    try:
        _, frames = splits.read(settings, settings.get("multi_label", False), train_required=False)
    except (TextclfError, OSError) as error:
        log.warning(f"the checkpoint's data cannot be read ({error}): its texts are not skipped (exclude_file=...)")
        return set()
    pair = ["text_pair"] if len(columns) > 1 else []
    known = {key for frame in frames.values() for key in keys_of(frame, ["text", *pair])}
    log.info(f"skipping the {len(known)} texts of the checkpoint's data")
    return known


class Candidates:
    """The `capacity` highest-scoring rows seen so far (their input columns, `row`, score and embedding),
    each text once; what a chunk adds beyond them is dropped, so memory stays bounded."""

    def __init__(self, capacity: int, columns: list[str]) -> None:
        self.capacity, self.columns = capacity, columns
        self.frame = pd.DataFrame()
        self.scores = np.zeros(0)
        self.embeddings: np.ndarray | None = None
        self.seen = self.skipped = 0
        self.warned = False

    def new_rows(self, frame: pd.DataFrame, start: int, known: set[str]) -> pd.DataFrame:
        """A chunk's rows numbered from `start`, less empty and known texts."""
        clashing = [column for column in ADDED if column in frame.columns]
        if clashing and not self.warned:
            log.warning(f"the input's own column {clashing[0]!r} is replaced by textclf-select's")
            self.warned = True
        frame = frame.drop(columns=clashing).assign(row=np.arange(start, start + len(frame), dtype=np.int64))
        texts = frame[self.columns[0]]
        empty = texts.isna() | (texts.astype(str).str.strip() == "")
        fresh = ~empty & ~keys_of(frame, self.columns).isin(known)
        self.skipped += int((~fresh).sum())
        return frame.loc[fresh].reset_index(drop=True)

    def add(self, chunk: pd.DataFrame, scores: np.ndarray, embeddings: np.ndarray | None) -> None:
        """Merge a chunk's scored rows in; keep the best `capacity`, a repeated text only at its best."""
        self.seen += len(chunk)
        frame = pd.concat([self.frame, chunk], ignore_index=True) if len(self.frame) else chunk
        scores = np.concatenate([self.scores, scores])
        if embeddings is not None:
            embeddings = embeddings if self.embeddings is None else np.concatenate([self.embeddings, embeddings])
        order = np.lexsort((frame["row"].to_numpy(), -scores))
        repeated = keys_of(frame.iloc[order], self.columns).duplicated().to_numpy()
        self.skipped += int(repeated.sum())
        keep = order[~repeated][: self.capacity]
        self.frame, self.scores = frame.iloc[keep].reset_index(drop=True), scores[keep]
        self.embeddings = embeddings[keep] if embeddings is not None else None
