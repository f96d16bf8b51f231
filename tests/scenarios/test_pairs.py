"""Text pairs: a label that depends on both texts is learned, predicted, evaluated and exported."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    compose_cfg,
    evaluate_on_file,
    export_checkpoint,
    toy_pairs,
    toy_training,
)
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig
from transformers import pipeline

from textclf.errors import DataError, SettingError
from textclf.inference.prediction import predict
from textclf.inference.predictor import Predictor
from textclf.running import unwrap


@pytest.fixture(scope="module")
def trained_pairs(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str, Path]:
    """(metrics, best checkpoint, training CSV) of a tiny model trained on toy pairs."""
    from textclf.training.fit import train

    root = tmp_path_factory.mktemp("pairs")
    csv = root / "pairs.csv"
    toy_pairs(500).to_csv(csv, index=False)
    cfg = compose_cfg(
        root / "run",
        tiny_model_dir,
        *toy_training(csv),
        "data.text_column=a",
        "data.text_pair_column=b",
        "trainer.max_epochs=5",
        "callbacks.early_stopping=null",
    )
    metrics, objects = train(cfg)
    return metrics, objects["trainer"].checkpoint_callback.best_model_path, csv


def test_a_pair_model_learns_a_label_that_needs_both_texts(trained_pairs, tmp_path: Path) -> None:
    metrics, checkpoint, csv = trained_pairs
    assert metrics["test/acc"] >= 0.9  # either text alone gives at most 0.75
    reproduced = evaluate_on_file(checkpoint, csv, tmp_path / "eval", "data.text_column=a", "data.text_pair_column=b")
    assert reproduced["test/acc"] == pytest.approx(metrics["test/acc"], abs=1e-3)


def test_the_pair_is_one_sequence_with_token_types(trained_pairs, tiny_model_dir: Path) -> None:
    _, checkpoint, _ = trained_pairs
    predictor = Predictor.from_checkpoint(checkpoint, precision="32-true")
    assert predictor.pairs and predictor.text_pair_column == "b"
    encoded = predictor.tokenizer("good film", "bad plot")
    assert encoded["token_type_ids"] == [0, 0, 0, 0, 1, 1, 1]
    with pytest.raises(DataError, match="reads pairs of texts"):
        predictor.predict_proba(["good film"])


def test_predict_and_the_hf_pipeline_agree_on_pairs(trained_pairs, tmp_path: Path) -> None:
    _, checkpoint, _ = trained_pairs
    frame = toy_pairs(120, seed=7)
    source = tmp_path / "pairs.csv"
    frame.to_csv(source, index=False)
    out = tmp_path / "predictions.jsonl"
    overrides = [f"ckpt_path={checkpoint}", f"input={source}", f"output={out}", "text_column=a", "precision=32-true"]
    predict(compose_cfg(tmp_path / "p", None, *overrides, config="predict"))
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["text_pair"] for row in rows] == frame["b"].tolist()
    assert np.mean([row["label"] == label for row, label in zip(rows, frame["label"])]) >= 0.85

    directory = export_checkpoint(checkpoint, "hf", tmp_path)
    classifier = pipeline("text-classification", model=str(directory), device="cpu")
    answers = classifier([{"text": a, "text_pair": b} for a, b in zip(frame["a"], frame["b"])])
    assert [answer["label"] for answer in answers] == [row["label"] for row in rows]
    card = (directory / "README.md").read_text()  # the model card shows how to pass a pair
    assert "classifier of text pairs with 2 labels" in card and '"text_pair": "the second text"' in card


@pytest.mark.slow
def test_the_onnx_graph_takes_token_types_for_pairs(trained_pairs, tmp_path: Path) -> None:
    import onnxruntime

    _, checkpoint, _ = trained_pairs
    directory = export_checkpoint(checkpoint, "onnx", tmp_path)
    session = onnxruntime.InferenceSession(str(directory / "model.onnx"))
    assert [node.name for node in session.get_inputs()] == ["input_ids", "attention_mask", "token_type_ids"]
    frame = toy_pairs(9, seed=3)
    predictor = Predictor.from_checkpoint(checkpoint, precision="32-true")
    inputs = predictor.tokenizer(frame["a"].tolist(), frame["b"].tolist(), padding=True, return_tensors="np")
    (logits,) = session.run(None, {k: v.astype(np.int64) for k, v in inputs.items()})
    expected = predictor.text_logits(frame["a"].tolist(), pairs=frame["b"].tolist())
    np.testing.assert_allclose(logits, expected, atol=1e-4)


def instantiation_error(cfg: DictConfig) -> Exception:
    """What a data config's instantiation raises, unwrapped from Hydra's exception as the commands do."""
    with pytest.raises(InstantiationException) as raised:
        instantiate(cfg.data)
    return unwrap(raised.value)


def test_pair_settings_and_inputs_are_checked_with_one_line(make_cfg, tmp_path: Path, trained_pairs) -> None:
    error = instantiation_error(make_cfg("data=rotten_tomatoes", "data.text_pair_column=b"))
    assert isinstance(error, SettingError) and "rotten_tomatoes' holds single texts" in str(error)
    with pytest.raises(SettingError, match="^data.truncation: head_tail is for single texts"):
        make_cfg("data=sentiment_pairs", "data.truncation=head_tail")  # refused before anything is built
    csv = tmp_path / "pairs.csv"
    toy_pairs(20).to_csv(csv, index=False)
    datamodule = instantiate(
        make_cfg("data=files", f"data.train_file={csv}", "data.text_column=a", "data.text_pair_column=second").data
    )
    with pytest.raises(DataError, match=r"pairs.csv: no column 'second' \(columns: a, b, label\)"):
        datamodule.setup()
    _, checkpoint, _ = trained_pairs
    lines = tmp_path / "texts.txt"
    lines.write_text("good film\n")
    with pytest.raises(DataError, match="reads a CSV, TSV, JSONL or Parquet file with the columns text and b"):
        predict(
            compose_cfg(tmp_path / "p", None, f"ckpt_path={checkpoint}", f"input={lines}", "output=-", config="predict")
        )


def test_sentiment_verdicts_need_both_texts() -> None:
    from textclf.data.packaged import VERDICTS, rotten_tomatoes, sentiment_verdicts

    pairs, sentences = sentiment_verdicts()["train"], rotten_tomatoes()["train"]
    assert pairs["text"].tolist() == sentences["text"].tolist()
    polarity = {verdict: name for name, verdicts in VERDICTS.items() for verdict in verdicts}
    agrees = [polarity[verdict] == label for verdict, label in zip(pairs["text_pair"], sentences["label"])]
    assert (pairs["label"] == "agrees").tolist() == agrees
    by_verdict = pairs.groupby("text_pair")["label"].apply(lambda labels: (labels == "agrees").mean())
    assert len(by_verdict) == 6 and by_verdict.between(0.45, 0.55).all()  # a verdict alone tells nothing
