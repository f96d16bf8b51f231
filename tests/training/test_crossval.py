"""k-fold cross-validation: stratified folds that cover the pooled train and val rows once, a run per fold
with the mean and spread of its metrics, resuming at the first unfinished fold, and sweeps over fold means."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import SPLIT_OPTIONS, child_env, toy_reviews, toy_training

from textclf.data.sources import Source
from textclf.data.splits import prepare
from textclf.errors import DataError

SOURCE = Source("files", train_file="train.csv")


def test_the_folds_cover_the_pooled_rows_once_each_stratified_and_leave_the_test_split_alone() -> None:
    frame = toy_reviews(203, seed=3)
    frame.loc[:29, "label"] = "neutral"  # a smaller third class
    splits = [prepare({"train": frame}, SOURCE, **SPLIT_OPTIONS, fold=k, folds=4) for k in range(4)]
    plain = prepare({"train": frame}, SOURCE, **SPLIT_OPTIONS)
    pool = sorted(pd.concat([plain["train"], plain["val"]])["text"])
    held_out = [split["val"] for split in splits]
    assert sorted(pd.concat(held_out)["text"]) == pool  # every pooled row validates exactly once
    for split in splits:
        assert sorted(pd.concat([split["train"], split["val"]])["text"]) == pool
        assert split["test"].equals(plain["test"])
    for label in ("positive", "negative", "neutral"):
        counts = [int((val["label"] == (label,)).sum()) for val in held_out]
        assert max(counts) - min(counts) <= 1, (label, counts)
    assert max(map(len, held_out)) - min(map(len, held_out)) <= 1
    with pytest.raises(DataError, match=r"data.fold must be from 0 to 3 \(data.folds=4\), not 4"):
        prepare({"train": frame}, SOURCE, **SPLIT_OPTIONS, fold=4, folds=4)


def command(module: str, tmp_path: Path, tiny_model_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    csv = tmp_path / "reviews.csv"
    if not csv.exists():
        toy_reviews(400).to_csv(csv, index=False)
    overrides = [
        *toy_training(csv),
        f"model.net.pretrained={tiny_model_dir}",
        f"paths.cache_dir={tmp_path / 'cache'}",
        "callbacks.progress_bar=null",
        "callbacks.model_summary=null",
        "+trainer.enable_progress_bar=false",
        *extra,
    ]
    env = child_env()
    return subprocess.run(
        [sys.executable, "-m", "textclf", module, *overrides], capture_output=True, text=True, env=env, cwd=tmp_path
    )


@pytest.mark.slow
def test_cross_validation_reports_the_mean_and_spread_and_resumes_at_the_unfinished_fold(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    run = tmp_path / "cv"
    args = ("cv.folds=3", f"hydra.run.dir={run}")
    killed = command(
        "train", tmp_path, tiny_model_dir, *args, "+callbacks.kill={_target_:crash.KillInFold,fold:1,step:3}"
    )
    assert killed.returncode == -9, killed.stderr[-2000:]
    first = (run / "fold_0" / "metrics.json").read_text()

    resumed = command("train", tmp_path, tiny_model_dir, *args, "resume=auto")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "fold 1 of 3: finished in an earlier run" in resumed.stderr
    # Lightning's records once, through the command's console handler, not again through Lightning's own
    assert "[lightning.fabric.utilities.seed] Seed set to 42" in resumed.stderr and "INFO: " not in resumed.stderr
    assert (run / "fold_0" / "metrics.json").read_text() == first  # not trained again
    metrics = json.loads((run / "metrics.json").read_text())
    assert len(metrics["folds"]) == 3
    for key in ("val/acc_best", "test/acc", "test/f1"):
        values = [fold[key] for fold in metrics["folds"]]
        assert metrics[key] == pytest.approx(statistics.fmean(values))
        assert metrics[f"{key}_std"] == pytest.approx(statistics.stdev(values))
    assert metrics["test/acc"] > 0.8  # every fold's model learned
    for fold in range(3):
        assert list((run / f"fold_{fold}" / "tensorboard").glob("events.out.tfevents.*"))
    assert "test/acc: " in resumed.stderr and "over 3 folds" in resumed.stderr

    bad = command("train", tmp_path, tiny_model_dir, "cv.folds=1", f"hydra.run.dir={tmp_path / 'bad'}")
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1] == (
        "textclf: error: cv.folds: 1 is out of range (a whole number ≥ 2, or null: no cross-validation)"
    )


@pytest.mark.slow
def test_a_sweep_with_cross_validation_optimises_the_fold_mean(tiny_model_dir: Path, tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    result = command(
        "sweep", tmp_path, tiny_model_dir, "cv.folds=2", "sweep.n_trials=2", "test=false", f"hydra.run.dir={sweep_dir}"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    summary = pd.read_csv(sweep_dir / "summary.csv")
    assert list(summary["status"]) == ["complete", "complete"]
    for _, row in summary.iterrows():
        folds = json.loads((Path(row["run_dir"]) / "metrics.json").read_text())["folds"]
        values = [fold["val/acc_best"] for fold in folds]
        assert row["val/acc_best"] == pytest.approx(statistics.fmean(values))
        assert row["val/acc_best_std"] == pytest.approx(statistics.stdev(values))
