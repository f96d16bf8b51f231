"""`audit(cfg)`, behind `textclf-audit`: cross-validate (or read a finished cross-validation), then find the
labels that are likely wrong, the conflicting duplicates and the outliers, and report them in the run dir.

    textclf-audit data=files data.train_file=train.csv            # 5 folds, then the report
    textclf-audit run_dir=outputs/train/runs/<date_time>          # a finished textclf-train cv.folds=K run

Act on the result with `textclf-train data.exclude_rows=RUN/label_issues.csv` (or a filtered copy) or
`data.relabel_file=...` (columns row, label).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import DictConfig

from textclf.curation.issues import Predictions, find_issues
from textclf.curation.report import summary_line, write_report
from textclf.errors import DataError, SettingError
from textclf.log import log

OOF_FILE = "oof_predictions.parquet"  # written by training/out_of_fold.py


def out_of_fold_predictions(cfg: DictConfig) -> tuple[Path, pd.DataFrame]:
    """The run dir and its out-of-fold predictions: a finished run's (`run_dir`), or those of the folds
    trained now."""
    if cfg.get("run_dir"):
        run_dir = Path(cfg.run_dir)
        if not (run_dir / OOF_FILE).is_file():
            raise DataError(f"{run_dir}: no {OOF_FILE} (a textclf-train cv.folds=K run writes one)")
    else:
        folds = cfg.cv.get("folds")
        if not isinstance(folds, int) or folds < 2:
            raise SettingError(f"cv.folds must be a whole number of at least 2, not {folds!r}")
        check_cleanlab()
        from textclf.training.fit import train  # Lightning: only when the folds are trained here

        train(cfg)
        run_dir = Path(cfg.paths.output_dir)
    return run_dir, pd.read_parquet(run_dir / OOF_FILE)


def check_cleanlab() -> None:
    """Confident learning is cleanlab's: say so before any fold trains."""
    try:
        import cleanlab  # noqa: F401
    except ImportError:
        raise SettingError("textclf-audit needs the audit extra (cleanlab): pip install 'textclf[audit]'") from None


def audit(cfg: DictConfig) -> dict[str, Any]:
    """label_issues.csv/.md/.html and label_noise.png in the run dir; returns the count of each issue."""
    run_dir, frame = out_of_fold_predictions(cfg)
    predictions = Predictions.of(frame)
    if predictions.embeddings is None:
        log.info(f"{run_dir / OOF_FILE}: no embeddings (cv.save_embeddings=false): duplicates by same text only")
    settings = cfg.get("audit", {})
    issues = find_issues(
        predictions, settings.get("filter_by", "prune_by_noise_rate"), settings.get("duplicate_overlap", 0.8)
    )
    write_report(run_dir, predictions, issues, int(settings.get("top", 50)))
    log.info(f"{summary_line(predictions, issues)} -> {run_dir / 'label_issues.csv'}")
    return {"run_dir": str(run_dir), "rows": len(frame)} | issues["issue"].value_counts().to_dict()
