"""Reading checkpoints back: refusals with one line, pickled payloads never run, textclf 0.1.0 checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import FIXTURES, best_checkpoint, compose_cfg
from transformers import pipeline

from textclf.errors import CheckpointError
from textclf.export.exporter import export
from textclf.inference.evaluation import evaluate
from textclf.inference.predictor import Predictor
from textclf.training.lit_module import load_lit_module


def test_bad_checkpoints_are_refused_with_one_line(trained_toy, tmp_path: Path) -> None:
    good = Path(best_checkpoint(trained_toy)).read_bytes()
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(good[: len(good) // 2])
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"this is not a checkpoint")
    for path, expected in (
        (tmp_path / "missing.ckpt", "checkpoint not found"),
        (truncated, "not a readable checkpoint"),
        (garbage, "not a PyTorch file"),
    ):
        with pytest.raises(CheckpointError) as error:
            load_lit_module(path)
        assert str(path) in str(error.value) and expected in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("older", ["0.1.0", "0.1.0 before freeze_embeddings"])
def test_a_checkpoint_of_textclf_0_1_0_loads_predicts_and_evaluates_as_it_did(tmp_path: Path, older: str) -> None:
    """tests/fixtures/legacy_v0.1.0.ckpt was written by textclf 0.1.0 (the module held encoder and head, and
    every setting was a hyper-parameter), with the predictions and eval metrics that version gave. Before
    `freeze_embeddings` that setting was a boolean `freeze_word_embeddings`."""
    path = FIXTURES / "legacy_v0.1.0.ckpt"
    if older.endswith("before freeze_embeddings"):
        checkpoint = torch.load(path, weights_only=True)
        hparams = checkpoint["hyper_parameters"]
        hparams["freeze_word_embeddings"] = hparams.pop("freeze_embeddings") != "none"
        path = tmp_path / "older.ckpt"
        torch.save(checkpoint, path)
    expected = json.loads((FIXTURES / "legacy_v0.1.0_expected.json").read_text())
    texts = pd.read_csv(FIXTURES / "legacy_v0.1.0_texts.csv")
    predictor = Predictor.from_checkpoint(path, precision="32-true")
    probabilities = predictor.predict_proba(texts["text"].tolist())
    np.testing.assert_allclose(probabilities, expected["probabilities"], atol=1e-5)
    assert predictor.labels_of(probabilities) == expected["labels"]
    assert predictor.id2label == {int(k): v for k, v in expected["id2label"].items()}
    metrics = evaluate(
        compose_cfg(
            tmp_path / "eval",
            None,
            f"ckpt_path={path}",
            "data=files",
            f"data.test_file={FIXTURES / 'legacy_v0.1.0_texts.csv'}",
            config="eval",
        )
    )
    for key, value in expected["eval_metrics"].items():
        assert metrics[key] == pytest.approx(value, abs=1e-4), key
    exported = export(
        compose_cfg(
            tmp_path / "export",
            None,
            f"ckpt_path={path}",
            "format=hf",
            f"output_dir={tmp_path / 'hf'}",
            config="export",
        )
    )
    classify = pipeline("text-classification", model=str(exported), top_k=None)
    scores = classify(texts["text"].tolist()[:5])
    for row, expected_row in zip(scores, expected["probabilities"][:5]):
        by_label = {item["label"]: item["score"] for item in row}
        assert [by_label[name] for name in predictor.id2label.values()] == pytest.approx(expected_row, abs=1e-4)


def test_a_checkpoint_carrying_a_pickled_payload_is_refused_and_never_runs(trained_toy, tmp_path: Path) -> None:
    marker = tmp_path / "payload-ran"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    checkpoint = torch.load(best_checkpoint(trained_toy), weights_only=True)
    checkpoint["hyper_parameters"]["surprise"] = Payload()
    tampered = tmp_path / "tampered.ckpt"
    torch.save(checkpoint, tampered)
    with pytest.raises(CheckpointError, match="refused"):
        load_lit_module(tampered)
    assert not marker.exists()


def test_a_checkpoint_whose_weights_do_not_fit_or_whose_base_model_is_gone_gives_one_line(
    trained_toy, tmp_path: Path
) -> None:
    checkpoint = torch.load(best_checkpoint(trained_toy), weights_only=True)
    weights = checkpoint["state_dict"]["net.model.classifier.weight"]
    checkpoint["state_dict"]["net.model.classifier.weight"] = torch.zeros(3, weights.shape[1])  # not two labels
    misfit = tmp_path / "misfit.ckpt"
    torch.save(checkpoint, misfit)
    with pytest.raises(CheckpointError) as error:
        load_lit_module(misfit)
    assert str(error.value).startswith(f"{misfit}: its weights do not fit its network (")
    assert "\n" not in str(error.value)
    checkpoint["state_dict"]["net.model.classifier.weight"] = weights
    checkpoint["network"] |= {"peft": "lora", "pretrained": str(tmp_path / "gone")}
    orphan = tmp_path / "orphan.ckpt"
    torch.save(checkpoint, orphan)
    with pytest.raises(CheckpointError, match=rf"{orphan}: its network cannot be built from '{tmp_path / 'gone'}' \("):
        load_lit_module(orphan)
