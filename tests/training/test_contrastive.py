"""The contrastive strategy and few-shot data: learning from 8 examples per class, resuming after a kill in
phase 1, runs without validation, and the choice `strategy=auto` makes."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import onnxruntime
import pandas as pd
import pytest
from conftest import export_checkpoint, toy_reviews
from hydra.utils import instantiate
from resume_runs import final_metrics, train_command

from textclf.errors import SettingError
from textclf.inference.predictor import Predictor
from textclf.training.contrastive import chosen_strategy
from textclf.training.fit import train

FEW_SHOT = ("data.val_fraction=0", "data.train_per_class=8", "trainer.precision=32-true")


def few_shot_files(tmp_path: Path) -> tuple[Path, Path]:
    """A toy review file to draw 8 examples per class from, and a test file."""
    frame = toy_reviews(500, seed=3)
    train_csv, test_csv = tmp_path / "train.csv", tmp_path / "test.csv"
    frame.iloc[:300].to_csv(train_csv, index=False)
    frame.iloc[300:].to_csv(test_csv, index=False)
    return train_csv, test_csv


@pytest.mark.slow
def test_the_packaged_minilm_learns_from_8_examples_per_class_contrastively_and_finetuning_does_not(
    make_cfg, tmp_path: Path
) -> None:
    """The real all-MiniLM-L6-v2: phase 1's pairs and phase 2's logistic regression against plain
    fine-tuning for as many epochs on the same 16 texts (SetFit's claim, on a toy task)."""
    train_csv, test_csv = few_shot_files(tmp_path)
    files = ("data=files", f"data.train_file={train_csv}", f"data.test_file={test_csv}", *FEW_SHOT)
    accuracy = {}
    for strategy in ("contrastive", "finetune"):
        cfg = make_cfg(*files, f"strategy={strategy}", "trainer.max_epochs=10", model_dir=None)
        cfg.paths.output_dir = str(tmp_path / strategy)
        metrics, _ = train(cfg)
        accuracy[strategy] = metrics["test/acc"]
    assert accuracy["contrastive"] >= 0.85 and accuracy["contrastive"] > accuracy["finetune"] + 0.1, accuracy


def test_a_few_shot_run_without_validation_tests_its_last_weights_and_predicts(
    make_cfg, tmp_path: Path, caplog
) -> None:
    """The issue's command on a tiny model: 8 per class, no validation split, both phases, then the
    checkpoint read back by the predictor like any other."""
    train_csv, test_csv = few_shot_files(tmp_path)
    overrides = ("strategy=contrastive", "data=files", f"data.train_file={train_csv}", f"data.test_file={test_csv}")
    cfg = make_cfg(*overrides, *FEW_SHOT, "strategy.body_lr=3e-3", "model.net.freeze_embeddings=none")
    with caplog.at_level(logging.INFO, logger="textclf"):
        metrics, objects = train(cfg)
    assert "no validation split (data.val_fraction=0)" in caplog.text
    assert objects["datamodule"].describe()["splits"] == {"train": 16, "val": 0, "test": 200}
    assert not any(key.startswith("val/") for key in metrics) and metrics["test/acc"] > 0.5
    written = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    assert written["test/acc"] == metrics["test/acc"]
    checkpoint = Path(written["best_model_path"])
    assert checkpoint.name == "contrastive.ckpt"
    texts = pd.read_csv(test_csv)["text"].tolist()
    predictor = Predictor.from_checkpoint(checkpoint)
    assert predictor.model.net.normalize and cfg.model.net.normalize  # strategy.normalize, kept in the checkpoint
    predicted = predictor.labels_of(predictor.predict_proba(texts))
    truth = pd.read_csv(test_csv)["label"].tolist()
    assert sum(p == t for p, t in zip(predicted, truth)) / len(texts) == pytest.approx(metrics["test/acc"], abs=0.01)
    onnx = export_checkpoint(checkpoint, "onnx", tmp_path)  # the head is the network's own linear layer
    session = onnxruntime.InferenceSession(str(onnx / "model.onnx"))
    inputs = predictor.tokenizer(texts[:5], padding=True, return_tensors="np", return_token_type_ids=False)
    (logits,) = session.run(None, {key: value.astype(np.int64) for key, value in inputs.items()})
    assert (logits.argmax(1) == predictor.predict_proba(texts[:5]).argmax(1)).all()
    with pytest.raises(Exception, match="format=hf: the mean head has no Hugging Face model class"):
        export_checkpoint(checkpoint, "hf", tmp_path)


def test_finetuning_without_validation_keeps_the_last_epoch(make_cfg, toy_csv: Path) -> None:
    cfg = make_cfg("data=files", f"data.train_file={toy_csv}", "data.val_fraction=0", "trainer.max_epochs=2")
    metrics, objects = train(cfg)
    written = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    assert Path(written["best_model_path"]).name == "last-epoch01.ckpt"
    assert objects["trainer"].current_epoch == 2 and "test/acc" in metrics


def test_calibrating_without_validation_is_one_line(make_cfg, toy_csv: Path) -> None:
    cfg = make_cfg("data=files", f"data.train_file={toy_csv}", "data.val_fraction=0", "model.calibrate=true")
    with pytest.raises(SettingError, match="^model.calibrate: True is fitted on the validation split"):
        train(cfg)


@pytest.mark.slow
def test_a_run_killed_in_phase_1_resumes_and_ends_as_if_it_never_stopped(tiny_model_dir: Path, tmp_path: Path) -> None:
    train_csv, test_csv = few_shot_files(tmp_path)
    extra = (
        "strategy=contrastive",
        f"data.test_file={test_csv}",
        "data.train_per_class=16",
        "strategy.body_lr=3e-3",
        "strategy.num_iterations=10",
    )  # 32 examples x 10 x 2 pairs / 16 = 40 steps; last checkpoint every 5
    reference = train_command(tmp_path / "uninterrupted", tiny_model_dir, train_csv, *extra)
    assert reference.returncode == 0, reference.stderr[-2000:]
    run = tmp_path / "killed"
    killed = train_command(
        run, tiny_model_dir, train_csv, *extra, "+callbacks.crash={_target_:crash.KillAtStep,step:23}"
    )
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert (run / "checkpoints" / "contrastive_last.ckpt").is_file() and not (run / "metrics.json").exists()
    resumed = train_command(run, tiny_model_dir, train_csv, *extra, "resume=auto")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "contrastive_last.ckpt at step 20" in resumed.stderr
    assert final_metrics(run) == final_metrics(tmp_path / "uninterrupted")


@pytest.mark.parametrize(
    "overrides, chosen",
    [
        (("data.train_per_class=8",), "contrastive"),
        (("data.train_per_class=100",), "finetune"),
        (("data.train_per_class=64",), "contrastive"),
        (("data.train_per_class=8", "strategy.contrastive_up_to=4"), "finetune"),
        (("data.train_per_class=8", "strategy=finetune"), "finetune"),
    ],
)
def test_auto_picks_contrastive_up_to_its_crossover(make_cfg, toy_csv: Path, overrides, chosen, caplog) -> None:
    cfg = make_cfg("data=files", f"data.train_file={toy_csv}", *overrides)
    data = instantiate(cfg.data)
    data.setup("fit")
    with caplog.at_level(logging.INFO, logger="textclf"):
        assert chosen_strategy(cfg, data) == chosen
    if cfg.strategy.name == "auto":
        assert f"strategy=auto: {chosen}, for" in caplog.text and "training examples per class" in caplog.text


def test_contrastive_refuses_regression_in_one_line(make_cfg, tmp_path: Path) -> None:
    from conftest import toy_scores

    csv = tmp_path / "scores.csv"
    toy_scores(60).to_csv(csv, index=False)
    cfg = make_cfg("data=files", f"data.train_file={csv}", "data.task=regression", "strategy=contrastive")
    with pytest.raises(SettingError, match="^strategy=contrastive: not for regression .*; use strategy=finetune$"):
        train(cfg)
    cfg = make_cfg("data=files", f"data.train_file={csv}", "data.task=regression", "data.train_per_class=4")
    with pytest.raises(Exception, match="data.train_per_class: regression has no classes"):
        train(cfg)


def test_train_per_class_keeps_that_many_of_each_class_from_its_seed(make_cfg, toy_csv: Path) -> None:
    drawn = []
    for seed in (1, 1, 2):
        cfg = make_cfg("data=files", f"data.train_file={toy_csv}", "data.train_per_class=5", f"data.sample_seed={seed}")
        data = instantiate(cfg.data)
        data.setup("fit")
        train_rows = data.frames["train"]
        assert train_rows["label"].value_counts().tolist() == [5, 5]
        assert len(data.frames["val"]) == 60  # val and test as without it
        drawn.append(train_rows["text"].tolist())
    assert drawn[0] == drawn[1] != drawn[2]


@pytest.mark.slow
def test_cross_validation_runs_the_contrastive_strategy_in_every_fold(make_cfg, toy_csv: Path) -> None:
    cfg = make_cfg(
        "data=files",
        f"data.train_file={toy_csv}",
        "strategy=contrastive",
        "strategy.body_lr=3e-3",
        "strategy.num_iterations=5",
        "data.train_per_class=8",
        "cv.folds=2",
    )
    metrics, _ = train(cfg)
    run = Path(cfg.paths.output_dir)
    assert {"val/acc_best", "val/acc_best_std", "test/acc", "test/acc_std"} <= set(metrics)
    for fold in (0, 1):
        assert (run / f"fold_{fold}" / "checkpoints" / "contrastive.ckpt").is_file()
    predictions = pd.read_parquet(run / "oof_predictions.parquet")
    assert len(predictions) == 540 and predictions["fold"].nunique() == 2  # every pooled row, out of fold


def test_long_texts_train_contrastively_window_by_window(make_cfg, tmp_path: Path) -> None:
    csv = tmp_path / "long.csv"
    toy_reviews(60).to_csv(csv, index=False)  # up to 21 words: up to 5 windows of 6
    windows = ("data.long_texts=window", "data.max_length=8", "data.window_stride=2")
    cfg = make_cfg(
        "data=files", f"data.train_file={csv}", *windows, "strategy=contrastive", "strategy.num_iterations=2"
    )
    metrics, objects = train(cfg)
    data = objects["datamodule"]
    assert len(data.datasets["train"]) > len(data.frames["train"])  # the examples were windows
    assert metrics["test/acc"] >= 0 and "val/acc" in metrics  # one row of metrics per text
