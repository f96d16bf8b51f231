"""k-fold cross-validation: `textclf-train cv.folds=K`.

The rows of the train and val splits are pooled and dealt into K folds, stratified by label, from
`data.split_seed` (`splits.cross_validation_fold`). Run k trains on the other folds and validates on fold k,
in `<run dir>/fold_k` with its own checkpoints and TensorBoard run. The test split is left alone, so every
fold's best model is tested on the same rows. The run dir's `metrics.json` holds the mean and standard
deviation of every metric over the folds, and each fold's own values. Resumed (`resume=auto` or the run
dir), it skips the finished folds and goes on with the first unfinished one from its last checkpoint.
Each fold's best model predicts its held-out rows (`out_of_fold.py`): `oof_predictions.parquet`.
"""

from __future__ import annotations

import copy
import json
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, open_dict

from textclf.atomic import write_json_atomically
from textclf.errors import SettingError
from textclf.log import log
from textclf.training.out_of_fold import pool_held_out, write_held_out

RunResult = tuple[dict[str, Any], dict[str, Any]]


def fold_config(cfg: DictConfig, fold: int, folds: int) -> DictConfig:
    """The run config of one fold: its own dir, its fold of the data; resumed when the whole run is."""
    fold_cfg = copy.deepcopy(cfg)
    with open_dict(fold_cfg):
        fold_cfg.paths.output_dir = str(Path(cfg.paths.output_dir) / f"fold_{fold}")
        fold_cfg.data.fold, fold_cfg.data.folds = fold, folds
        fold_cfg.cv.folds = None
        fold_cfg.resume = "auto" if cfg.get("resume") else None
    return fold_cfg


def fold_statistics(per_fold: list[dict[str, Any]]) -> dict[str, float]:
    """Mean and sample standard deviation (`<key>_std`) of every number that all folds report."""
    keys = [key for key, value in per_fold[0].items() if isinstance(value, (int, float))]
    summary = {}
    for key in keys:
        values = [float(fold[key]) for fold in per_fold if key in fold]
        if len(values) == len(per_fold):
            summary[key] = statistics.fmean(values)
            summary[f"{key}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
    return summary


def cross_validate(cfg: DictConfig, run: Callable[[DictConfig], RunResult]) -> RunResult:
    """`run` once per fold; returns the mean of each metric (what a sweep optimises) and the last fold's objects."""
    folds = cfg.cv.folds
    if not isinstance(folds, int) or folds < 2:
        raise SettingError(f"cv.folds must be a whole number of at least 2, not {folds!r}")
    output_dir = Path(cfg.paths.output_dir)
    per_fold, objects = [], {}
    for fold in range(folds):
        finished = output_dir / f"fold_{fold}" / "metrics.json"
        if finished.is_file():
            log.info(f"fold {fold + 1} of {folds}: finished in an earlier run, {finished}")
            per_fold.append(json.loads(finished.read_text()))
            continue
        log.info(f"fold {fold + 1} of {folds}")
        fold_cfg = fold_config(cfg, fold, folds)
        metrics, objects = run(fold_cfg)
        if rank_zero_only.rank == 0:
            write_held_out(fold_cfg, objects, fold)
        per_fold.append(metrics)
    summary = fold_statistics(per_fold)
    for key in sorted(key for key in summary if not key.endswith("_std")):
        log.info(f"{key}: {summary[key]:.4f} ± {summary[key + '_std']:.4f} over {folds} folds")
    if rank_zero_only.rank == 0:
        pool_held_out(output_dir, folds)
        write_json_atomically(output_dir / "metrics.json", {**summary, "folds": per_fold})
    return summary, objects
