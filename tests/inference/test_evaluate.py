"""`textclf-eval`: metrics that reproduce training's test, reports, and refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from conftest import best_checkpoint, compose_cfg

from textclf.inference.evaluation import evaluate


def test_eval_reproduces_the_test_metrics_of_training_and_writes_reports(trained_toy, tmp_path: Path) -> None:
    cfg, metrics, _ = trained_toy
    eval_cfg = compose_cfg(
        tmp_path / "eval",
        None,
        f"ckpt_path={best_checkpoint(trained_toy)}",
        "data=files",
        f"data.train_file={cfg.data.train_file}",
        "precision=32-true",
        config="eval",
    )
    reproduced = evaluate(eval_cfg)
    for key in ("test/acc", "test/f1", "test/precision", "test/recall", "test/loss"):
        assert reproduced[key] == pytest.approx(metrics[key], abs=1e-3), key
    report = pd.read_csv(tmp_path / "eval" / "per_class.csv")
    assert report["label"].tolist() == ["negative", "positive"] and report["support"].sum() == 60
    assert (tmp_path / "eval" / "confusion_matrix.png").stat().st_size > 5_000
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["examples"] == 60
    misclassified = pd.read_csv(tmp_path / "eval" / "misclassified.csv")
    assert len(misclassified) == round((1 - metrics["test/acc"]) * 60)


def test_eval_refuses_data_whose_labels_the_checkpoint_does_not_know(trained_toy, tmp_path: Path) -> None:
    other = tmp_path / "other.csv"
    pd.DataFrame({"text": ["good film", "a plot"], "label": ["positive", "neutral"]}).to_csv(other, index=False)
    eval_cfg = compose_cfg(
        tmp_path / "eval",
        None,
        f"ckpt_path={best_checkpoint(trained_toy)}",
        "data=files",
        f"data.test_file={other}",
        config="eval",
    )
    with pytest.raises(
        ValueError, match=r"other.csv \(test\): row 2 has label 'neutral' that the checkpoint does not know"
    ):
        evaluate(eval_cfg)
