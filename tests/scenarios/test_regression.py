"""Regression: a number per text is learned, predicted, evaluated and exported on the targets' scale."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import (
    SPLIT_OPTIONS,
    compose_cfg,
    evaluate_on_file,
    export_checkpoint,
    toy_scores,
    toy_training,
)
from resume_runs import assert_resumes_as_if_never_stopped
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from transformers import pipeline

from textclf.errors import DataError, SettingError
from textclf.inference.prediction import predict
from textclf.inference.predictor import Predictor
from textclf.model.tasks import StandardizedLoss


@pytest.fixture(scope="module")
def trained_scores(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str, Path]:
    from textclf.training.fit import train

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


def test_each_validation_and_the_test_draw_predicted_against_true_scores(trained_scores) -> None:
    _, checkpoint, _ = trained_scores
    events = EventAccumulator(str(Path(checkpoint).parent.parent / "tensorboard")).Reload()
    assert {"val/predicted_vs_true", "test/predicted_vs_true"} <= set(events.Tags()["images"])
    assert len(events.Images("val/predicted_vs_true")) == 4  # one per validation (4 epochs), none for the sanity check
    assert events.Images("test/predicted_vs_true")[0].encoded_image_string.startswith(b"\x89PNG")


def test_eval_predict_and_the_hf_pipeline_give_the_same_scores(trained_scores, tmp_path: Path) -> None:
    metrics, checkpoint, csv = trained_scores
    reproduced = evaluate_on_file(checkpoint, csv, tmp_path / "eval", "data.task=regression")
    for key in ("test/pearson", "test/spearman", "test/mse", "test/mae"):
        assert reproduced[key] == pytest.approx(metrics[key], abs=1e-3), key
    assert pd.read_csv(tmp_path / "eval" / "errors.csv").shape == (50, 3)
    assert (tmp_path / "eval" / "predicted_vs_true.png").read_bytes().startswith(b"\x89PNG")

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

    directory = export_checkpoint(checkpoint, "hf", tmp_path)
    card = (directory / "README.md").read_text()
    assert "A regression model of texts" in card and 'function_to_apply="none"' in card and "Test Pearson r" in card
    regressor = pipeline("text-classification", model=str(directory), device="cpu", function_to_apply="none")
    exported = np.array([answer["score"] for answer in regressor(frame["text"].tolist())])
    ours = Predictor.from_checkpoint(checkpoint, precision="32-true").predict_proba(frame["text"].tolist())[:, 0]
    np.testing.assert_allclose(exported, ours, atol=1e-3)


def test_a_label_that_is_no_number_is_named_with_its_row(make_cfg, tmp_path: Path) -> None:
    from textclf.training.fit import train

    csv = tmp_path / "scores.csv"
    frame = toy_scores(30).astype({"label": str})
    frame.loc[6, "label"] = "high"
    frame.to_csv(csv, index=False)
    with pytest.raises(DataError, match=r"scores.csv \(train\): row 7 has label 'high', not a number"):
        train(make_cfg("data=files", f"data.train_file={csv}", "data.task=regression"))


@pytest.mark.slow
def test_the_onnx_graph_outputs_the_score(trained_scores, tmp_path: Path) -> None:
    import onnxruntime

    _, checkpoint, _ = trained_scores
    directory = export_checkpoint(checkpoint, "onnx", tmp_path)
    texts = toy_scores(9, seed=3)["text"].tolist()
    predictor = Predictor.from_checkpoint(checkpoint, precision="32-true")
    inputs = predictor.tokenizer(texts, padding=True, return_tensors="np", return_token_type_ids=False)
    session = onnxruntime.InferenceSession(str(directory / "model.onnx"))
    (scores,) = session.run(None, {k: v.astype(np.int64) for k, v in inputs.items()})
    np.testing.assert_allclose(scores[:, 0], predictor.predict_proba(texts)[:, 0], atol=1e-3)


def test_huber_loss_is_squared_within_one_standard_deviation_and_linear_beyond() -> None:
    logits = torch.tensor([[0.5], [3.0]])  # standardized predictions; the targets standardize to 0
    targets = torch.tensor([50.0, 50.0])
    mse, huber = StandardizedLoss(50.0, 10.0, "mse"), StandardizedLoss(50.0, 10.0, "huber")
    assert float(mse(logits, targets)) == pytest.approx((0.25 + 9.0) / 2)
    assert float(huber(logits, targets)) == pytest.approx((0.5 * 0.25 + (3.0 - 0.5)) / 2)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            ("model.regression_loss=l1", "data.task=regression"),
            "model.regression_loss: 'l1' is not a choice (mse, huber)",
        ),
        (("model.regression_loss=huber",), "model.regression_loss: huber is for data.task=regression"),
    ],
)
def test_regression_loss_settings_are_checked_with_one_line(make_cfg, tmp_path: Path, overrides, message) -> None:
    csv = tmp_path / "scores.csv"
    toy_scores(40).to_csv(csv, index=False)
    with pytest.raises(SettingError, match=re.escape(message)):
        make_cfg("data=files", f"data.train_file={csv}", *overrides)


@pytest.mark.slow
def test_huber_regression_learns_in_every_fold_and_logs_its_own_metric(
    tiny_model_dir: Path, tmp_path: Path, caplog
) -> None:
    """Cross-validation of a regression with Huber loss and a few wild scores; progress lines name
    val/pearson (the output is not a terminal here)."""
    from textclf.training.fit import train

    frame = toy_scores(800)
    frame.loc[::40, "label"] = 120.0  # twenty outlying scores (the others are 30 to 70)
    csv = tmp_path / "scores.csv"
    frame.to_csv(csv, index=False)
    cfg = compose_cfg(
        tmp_path / "run",
        tiny_model_dir,
        *toy_training(csv),
        "data.task=regression",
        "model.regression_loss=huber",
        "cv.folds=2",
        "trainer.max_epochs=6",
        "callbacks.early_stopping=null",
        "callbacks.progress_log.enabled=always",
    )
    with caplog.at_level(logging.INFO, logger="textclf"):
        metrics, _ = train(cfg)
    folds = json.loads((tmp_path / "run" / "metrics.json").read_text())["folds"]
    assert len(folds) == 2 and all(fold["test/spearman"] >= 0.8 for fold in folds), folds
    assert metrics["test/spearman"] == pytest.approx(sum(fold["test/spearman"] for fold in folds) / 2)
    ends = [r.getMessage() for r in caplog.records if "end of epoch" in r.getMessage()]
    assert len(ends) == 12 and all("val/pearson " in line and "val/pearson_best " in line for line in ends), ends


@pytest.mark.slow
def test_a_killed_regression_run_resumes_with_its_target_scale(tiny_model_dir: Path, tmp_path: Path) -> None:
    csv = tmp_path / "scores.csv"
    toy_scores(600).to_csv(csv, index=False)
    extra = ("data.task=regression", "callbacks.early_stopping=null")
    assert_resumes_as_if_never_stopped(tmp_path, tiny_model_dir, csv, *extra, kill_at=37, resumed_at=35)


def test_fractional_labels_read_as_classes_get_a_note_naming_the_file(caplog) -> None:
    from textclf.data.sources import Source
    from textclf.data.splits import prepare

    source = Source("files", train_file="ratings.csv")
    scores = toy_scores(40).assign(label=lambda frame: frame["label"] / 7)
    with caplog.at_level(logging.WARNING, logger="textclf"):
        prepare({"train": scores}, source, **SPLIT_OPTIONS)
        prepare({"train": toy_scores(40)}, source, **SPLIT_OPTIONS)  # whole numbers: classes, no note
    notes = [r.getMessage() for r in caplog.records]
    assert len(notes) == 1 and notes[0].startswith("ratings.csv (train): the labels are numbers such as ")
    assert notes[0].endswith("set data.task=regression to predict a number"), notes
