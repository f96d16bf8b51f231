"""Out-of-fold predictions of `cv.folds=K`: every pooled train/val row once, numbered as in the input, each
predicted as its own fold's best checkpoint predicts it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import SPLIT_OPTIONS, toy_reviews, toy_training

from textclf.data.sources import Source
from textclf.data.splits import prepare
from textclf.inference.predictor import Predictor


def test_rows_are_numbered_through_the_training_then_the_validation_file() -> None:
    train, val = toy_reviews(30, seed=1), toy_reviews(10, seed=2)
    train.loc[3, "text"] = " "  # dropped as empty: its number is not reused
    splits = prepare({"train": train, "val": val}, Source("files", train_file="t.csv"), **SPLIT_OPTIONS)
    for split, frame in splits.items():
        source = pd.concat([train, val], ignore_index=True)
        assert list(frame["text"]) == list(source["text"].iloc[frame["row"]]), split
    assert sorted(splits["val"]["row"]) == list(range(30, 40))
    assert 3 not in set(pd.concat(splits.values())["row"])


@pytest.mark.slow
@pytest.mark.parametrize("test", ["true", "false"])  # the best weights restored by the test, or read back
def test_the_oof_file_covers_every_pooled_row_once_and_matches_each_folds_own_predictions(
    make_cfg, tmp_path: Path, test: str
) -> None:
    from textclf.training.fit import train

    csv = tmp_path / "reviews.csv"
    source = toy_reviews(600, seed=4)
    source.to_csv(csv, index=False)
    cfg = make_cfg(*toy_training(csv), "cv.folds=3", "cv.save_embeddings=true", f"test={test}")
    train(cfg)
    run = Path(cfg.paths.output_dir)
    oof = pd.read_parquet(run / "oof_predictions.parquet")
    plain = prepare({"train": source}, Source("files", train_file=str(csv)), **{**SPLIT_OPTIONS, "split_seed": 42})
    pooled = sorted(pd.concat([plain["train"], plain["val"]])["row"])
    assert list(oof["row"]) == pooled  # every pooled row once, in row order; no test row
    assert list(oof["text"]) == list(source["text"].iloc[oof["row"]])  # the input's own rows
    assert list(oof["label"]) == list(source["label"].iloc[oof["row"]])
    assert sorted(oof["fold"].unique()) == [0, 1, 2]
    probabilities = oof[["prob_negative", "prob_positive"]].to_numpy()
    np.testing.assert_allclose(probabilities.sum(1), 1, atol=1e-5)
    assert np.stack(oof["embedding"]).shape == (len(oof), 32)  # the tiny BERT's width
    for fold in range(3):
        held = oof[oof["fold"] == fold]
        best = next((run / f"fold_{fold}" / "checkpoints").glob("epoch*.ckpt"))
        own = Predictor.from_checkpoint(best, precision="32-true", device="cpu").predict_proba(list(held["text"]))
        np.testing.assert_allclose(own[:, [0, 1]], held[["prob_negative", "prob_positive"]], atol=1e-4)
    accuracy = (oof["label"] == np.where(probabilities[:, 1] > 0.5, "positive", "negative")).mean()
    assert accuracy > 0.8  # predictions of models that learned, on rows they never saw
