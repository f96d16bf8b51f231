"""Out-of-fold predictions of a `cv.folds=K` run: each fold's best model predicts the rows it was held out
from, right after the fold trains, with the model still in memory (one forward pass over a fifth of the
pool, against the fold's epochs of training). Pooled, every train and val row has a prediction from a
model that never saw it: what confident learning needs (`textclf-audit`).

`<fold dir>/held_out.parquet` holds a fold's rows, so a resumed run keeps the folds already done;
`<run dir>/oof_predictions.parquet` all of them, by input row: `row`, `text` (`text_pair`), `label`, `fold`,
`prob_<class>` for every class (or `score` for regression) and, with `cv.save_embeddings=true`,
`embedding`, the mean-pooled last hidden state.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig

from textclf.atomic import write_atomically
from textclf.inference.embeddings import logits_and_embeddings
from textclf.inference.predictor import Predictor
from textclf.log import log
from textclf.precision import resolve_precision
from textclf.training.resuming import holds_best_weights

HELD_OUT, OOF_FILE = "held_out.parquet", "oof_predictions.parquet"


def best_model(cfg: DictConfig, objects: dict[str, Any]) -> Any:
    """The fold's best weights in the model in memory: there already when the test ran on them or when
    training ended on them, else read into it from the best checkpoint (its weights only: no second network
    is built); without a best checkpoint, the model as it ended."""
    model, trainer = objects["model"], objects["trainer"]
    best_path = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    if best_path and not cfg.get("test") and not holds_best_weights(trainer, best_path):
        checkpoint = torch.load(best_path, map_location=model.device, weights_only=True)
        model.load_state_dict(checkpoint["state_dict"], strict=model.strict_loading)
        model.on_load_checkpoint(checkpoint)
    model.data_hparams = dict(objects["datamodule"].hparams)
    return model


def given_labels(frame: pd.DataFrame, regression: bool, multi_label: bool) -> list[Any]:
    """The rows' labels as the file gave them: a name, a list of names (multi-label) or a number."""
    if regression:
        return [float(names[0]) for names in frame["label"]]
    return [list(names) for names in frame["label"]] if multi_label else [names[0] for names in frame["label"]]


def held_out_frame(cfg: DictConfig, objects: dict[str, Any], fold: int) -> pd.DataFrame:
    """The fold's validation rows with the best model's probabilities (and embeddings when asked)."""
    datamodule = objects["datamodule"]
    model = best_model(cfg, objects)
    predictor = Predictor(
        model, precision=resolve_precision(cfg.trainer.precision), device=str(objects["trainer"].strategy.root_device)
    )
    frame = datamodule.frames["val"]
    logits, embeddings = logits_and_embeddings(
        predictor,
        frame["text"],
        pairs=frame["text_pair"] if predictor.pairs else None,
        cache_dir=cfg.paths.cache_dir,
        batch_size=cfg.data.eval_batch_size,
        pad_to_multiple_of=cfg.data.pad_to_multiple_of,
    )
    probabilities = predictor.probabilities(logits)
    columns: dict[str, Any] = {"row": frame["row"].to_numpy(), "text": frame["text"].to_numpy()}
    if "text_pair" in frame:
        columns["text_pair"] = frame["text_pair"].to_numpy()
    columns["label"] = given_labels(frame, predictor.task.regression, predictor.task.multi_label)
    columns["fold"] = np.full(len(frame), fold, dtype=np.int64)
    if predictor.task.regression:
        columns["score"] = probabilities[:, 0]
    else:
        columns |= {f"prob_{name}": probabilities[:, index] for index, name in predictor.id2label.items()}
    if cfg.cv.get("save_embeddings"):
        columns["embedding"] = list(embeddings)
    return pd.DataFrame(columns)


def write_held_out(cfg: DictConfig, objects: dict[str, Any], fold: int) -> None:
    """The fold's out-of-fold predictions, `held_out.parquet` in its run dir (`cfg`: the fold's config), with
    the seconds they took logged (what they add to the fold's run)."""
    start = time.perf_counter()
    frame = held_out_frame(cfg, objects, fold)
    path = Path(cfg.paths.output_dir) / HELD_OUT
    write_atomically(path, lambda target: frame.to_parquet(target, index=False))
    log.info(f"fold {fold + 1}: out-of-fold predictions of {len(frame)} rows in {time.perf_counter() - start:.1f} s")


def pool_held_out(output_dir: Path, folds: int) -> Path | None:
    """Every fold's held-out rows in `oof_predictions.parquet`, by row; None (with a warning) when a fold,
    finished by an older textclf, has none."""
    paths = [output_dir / f"fold_{fold}" / HELD_OUT for fold in range(folds)]
    missing = [str(path.parent.name) for path in paths if not path.is_file()]
    if missing:
        log.warning(f"no out-of-fold predictions: {', '.join(missing)} finished without {HELD_OUT}")
        return None
    pooled = pd.concat([pd.read_parquet(path) for path in paths], ignore_index=True)
    pooled = pooled.sort_values("row", kind="stable").reset_index(drop=True)
    target = output_dir / OOF_FILE
    write_atomically(target, lambda path: pooled.to_parquet(path, index=False))
    log.info(f"out-of-fold predictions of {len(pooled)} rows: {target}")
    return target
