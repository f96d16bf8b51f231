"""Regression: a number per text is learned, predicted, evaluated and exported on the targets' scale."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import FILLER, NEGATIVE, POSITIVE, compose_cfg, toy_training
from transformers import pipeline

from textclf.errors import DataError
from textclf.evaluate import evaluate
from textclf.export import export
from textclf.inference import Predictor
from textclf.predict import predict


def toy_scores(count: int, seed: int = 0) -> pd.DataFrame:
    """Reviews scored 10 x (positive words - negative words) + 50: the score has its own scale and offset,
    which the model must give back (it trains on standardized targets)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        positive, negative = rng.randint(0, 2), rng.randint(0, 2)
        words = rng.choices(FILLER, k=rng.randint(1, 4)) + rng.choices(POSITIVE, k=positive)
        words += rng.choices(NEGATIVE, k=negative)
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": 10.0 * (positive - negative) + 50})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def trained_scores(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str, Path]:
    from textclf.train import train

    root = tmp_path_factory.mktemp("regression")
    csv = root / "scores.csv"
    toy_scores(500).to_csv(csv, index=False)
    cfg = compose_cfg(
        root / "run", tiny_model_dir, *toy_training(csv), "data.task=regression", "callbacks.early_stopping=null"
    )
    metrics, objects = train(cfg)
    return metrics, objects["trainer"].checkpoint_callback.best_model_path, csv


def test_regression_learns_scores_far_better_than_the_mean(trained_scores) -> None:
    metrics, checkpoint, _ = trained_scores
    assert "pearson" in Path(checkpoint).name and metrics["val/pearson_best"] >= metrics["val/pearson"] - 1e-6
    assert metrics["test/pearson"] >= 0.9 and metrics["test/spearman"] >= 0.85
    baseline = toy_scores(500)["label"].std() ** 2  # the MSE of always predicting the mean
    assert metrics["test/mse"] <= 0.3 * baseline


def test_eval_predict_and_the_hf_pipeline_give_the_same_scores(trained_scores, tmp_path: Path) -> None:
    metrics, checkpoint, csv = trained_scores
    reproduced = evaluate(
        compose_cfg(
            tmp_path / "eval",
            None,
            f"ckpt_path={checkpoint}",
            "data=files",
            f"data.train_file={csv}",
            "data.task=regression",
            "precision=32-true",
            config="eval",
        )
    )
    for key in ("test/pearson", "test/spearman", "test/mse", "test/mae"):
        assert reproduced[key] == pytest.approx(metrics[key], abs=1e-3), key
    assert pd.read_csv(tmp_path / "eval" / "errors.csv").shape == (50, 3)

    frame = toy_scores(60, seed=4)
    source = tmp_path / "texts.txt"
    source.write_text("\n".join(frame["text"]) + "\n")
    out = tmp_path / "scores.jsonl"
    predict(
        compose_cfg(
            tmp_path / "p", None, f"ckpt_path={checkpoint}", f"input={source}", f"output={out}", config="predict"
        )
    )
    scores = np.array([json.loads(line)["score"] for line in out.read_text().splitlines()])
    assert np.corrcoef(scores, frame["label"])[0, 1] >= 0.9 and abs(scores.mean() - frame["label"].mean()) < 10

    overrides = (f"ckpt_path={checkpoint}", "format=hf", f"output_dir={tmp_path / 'hf'}")
    directory = export(compose_cfg(tmp_path / "x", None, *overrides, config="export"))
    regressor = pipeline("text-classification", model=str(directory), device="cpu", function_to_apply="none")
    exported = np.array([answer["score"] for answer in regressor(frame["text"].tolist())])
    ours = Predictor.from_checkpoint(checkpoint, precision="32-true").predict_proba(frame["text"].tolist())[:, 0]
    np.testing.assert_allclose(exported, ours, atol=1e-3)


def test_a_label_that_is_no_number_is_named_with_its_row(make_cfg, tmp_path: Path) -> None:
    from textclf.train import train

    csv = tmp_path / "scores.csv"
    frame = toy_scores(30).astype({"label": str})
    frame.loc[6, "label"] = "high"
    frame.to_csv(csv, index=False)
    with pytest.raises(DataError, match=r"scores.csv \(train\): row 7 has label 'high', not a number"):
        train(make_cfg("data=files", f"data.train_file={csv}", "data.task=regression"))


def test_the_onnx_graph_outputs_the_score(trained_scores, tmp_path: Path) -> None:
    import onnxruntime

    _, checkpoint, _ = trained_scores
    overrides = (f"ckpt_path={checkpoint}", "format=onnx", f"output_dir={tmp_path / 'onnx'}")
    directory = export(compose_cfg(tmp_path / "x", None, *overrides, config="export"))
    texts = toy_scores(9, seed=3)["text"].tolist()
    predictor = Predictor.from_checkpoint(checkpoint, precision="32-true")
    inputs = predictor.tokenizer(texts, padding=True, return_tensors="np", return_token_type_ids=False)
    session = onnxruntime.InferenceSession(str(directory / "model.onnx"))
    (scores,) = session.run(None, {k: v.astype(np.int64) for k, v in inputs.items()})
    np.testing.assert_allclose(scores[:, 0], predictor.predict_proba(texts)[:, 0], atol=1e-3)
