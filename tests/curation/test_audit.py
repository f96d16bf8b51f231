"""`textclf-audit` end to end: it trains the folds, finds the labels planted wrong in a toy set, writes its
reports, reads a finished run again, and a cleaned run drops exactly the rows it flagged."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import TESTS, compose_cfg, toy_reviews, toy_training

from textclf.curation.audit import audit

QUIET = (
    "callbacks.progress_bar=null",
    "callbacks.model_summary=null",
    "+trainer.enable_progress_bar=false",
    "+trainer.enable_model_summary=false",
)


@pytest.mark.slow
def test_the_audit_finds_planted_flips_and_reports_them(tiny_model_dir: Path, tmp_path: Path) -> None:
    reviews = toy_reviews(600, seed=8)
    flipped = set(reviews.sample(30, random_state=1).index)
    reviews.loc[list(flipped), "label"] = reviews.loc[list(flipped), "label"].map(
        {"positive": "negative", "negative": "positive"}
    )
    csv = tmp_path / "reviews.csv"
    reviews.to_csv(csv, index=False)
    run = tmp_path / "audit"
    overrides = (*toy_training(csv), *QUIET, "cv.folds=3", f"model.net.pretrained={tiny_model_dir}")
    counts = audit(compose_cfg(run, None, *overrides, config="audit"))
    issues = pd.read_csv(run / "label_issues.csv")
    assert list(issues.columns) == ["row", "text", "label", "suggested_label", "label_quality", "issue"]
    found = set(issues.loc[issues["issue"] == "label", "row"])
    pooled = set(pd.read_parquet(run / "oof_predictions.parquet")["row"])
    planted = flipped & pooled  # the flips in the test split are not audited
    precision, recall = len(found & planted) / max(len(found), 1), len(found & planted) / len(planted)
    assert precision >= 0.7 and recall >= 0.7, (precision, recall)
    assert list(issues["text"][issues["issue"] == "label"]) == list(
        reviews["text"][issues["row"][issues["issue"] == "label"]]
    )
    assert counts["label"] == len(found)
    for name in ("label_issues.md", "label_issues.html", "label_noise.png"):
        assert (run / name).stat().st_size > 100, name
    assert "| positive |" in (run / "label_issues.md").read_text()

    again = audit(compose_cfg(tmp_path / "other", None, f"run_dir={run}", config="audit"))
    assert again["label"] == counts["label"]

    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    missing = subprocess.run(
        [sys.executable, "-m", "textclf", "audit", f"run_dir={tmp_path}", f"hydra.run.dir={tmp_path / 'x'}"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines()[-1] == (
        f"textclf: error: {tmp_path}: no oof_predictions.parquet (a textclf-train cv.folds=K run writes one)"
    )
