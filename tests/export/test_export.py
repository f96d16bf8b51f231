"""`textclf-export`: Hugging Face directories and ONNX graphs that predict what the checkpoint predicts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import best_checkpoint, compose_cfg, export_checkpoint, toy_reviews, toy_training
from transformers import pipeline

from textclf.export.exporter import export
from textclf.inference.predictor import Predictor
from textclf.training.lit_module import load_lit_module


def test_export_hf_pipeline_predicts_what_the_checkpoint_predicts(trained_toy, tmp_path: Path) -> None:
    directory = export(
        compose_cfg(
            tmp_path / "x",
            None,
            f"ckpt_path={best_checkpoint(trained_toy)}",
            "format=hf",
            f"output_dir={tmp_path / 'hf'}",
            config="export",
        )
    )
    assert (directory / "model.safetensors").is_file()
    texts = toy_reviews(100, seed=9)["text"].tolist()
    classifier = pipeline("text-classification", model=str(directory), device="cpu")
    predictor = Predictor.from_checkpoint(best_checkpoint(trained_toy), precision="32-true")
    ours = predictor.labels_of(predictor.predict_proba(texts))
    assert [answer["label"] for answer in classifier(texts)] == ours


def test_export_hf_writes_a_model_card_with_the_run_test_metrics(trained_toy, tmp_path: Path) -> None:
    _, metrics, _ = trained_toy
    directory = export(
        compose_cfg(
            tmp_path / "x",
            None,
            f"ckpt_path={best_checkpoint(trained_toy)}",
            "format=hf",
            f"output_dir={tmp_path / 'my-classifier'}",
            config="export",
        )
    )
    text = (directory / "README.md").read_text(encoding="utf-8")
    front, body = text.removeprefix("---\n").split("\n---\n", 1)
    card = yaml.safe_load(front)
    assert card["pipeline_tag"] == "text-classification" and card["library_name"] == "transformers"
    assert "base_model" not in card  # fine-tuned from a local folder, not a hub model
    (result,) = card["model-index"][0]["results"]
    assert card["model-index"][0]["name"] == "my-classifier"
    reported = {metric["name"]: metric["value"] for metric in result["metrics"]}
    assert reported["Test accuracy"] == round(metrics["test/acc"], 4)
    assert reported["Test F1 (macro)"] == round(metrics["test/f1"], 4)
    assert "| 0 | negative |" in body and 'pipeline("text-classification"' in body
    assert pipeline("text-classification", model=str(directory), device="cpu")("a great film")[0]["label"]


@pytest.mark.slow
def test_export_onnx_matches_pytorch_on_other_shapes(trained_toy, tmp_path: Path) -> None:
    import onnxruntime

    directory = export(
        compose_cfg(
            tmp_path / "x",
            None,
            f"ckpt_path={best_checkpoint(trained_toy)}",
            "format=onnx",
            f"output_dir={tmp_path / 'onnx'}",
            config="export",
        )
    )
    session = onnxruntime.InferenceSession(str(directory / "model.onnx"))
    model = load_lit_module(best_checkpoint(trained_toy))
    inputs = model.tokenizer(
        toy_reviews(7, seed=3)["text"].tolist(), padding=True, return_tensors="np", return_token_type_ids=False
    )
    (logits,) = session.run(None, {k: v.astype(np.int64) for k, v in inputs.items()})
    with torch.no_grad():
        expected = model(torch.from_numpy(inputs["input_ids"]), torch.from_numpy(inputs["attention_mask"]))
    np.testing.assert_allclose(logits, expected.numpy(), atol=1e-4)


def test_export_hf_of_a_model_pretrained_in_bf16_matches_its_checkpoint(
    tiny_bf16_model_dir: Path, toy_csv: Path, tmp_path: Path
) -> None:
    """The export's model is built in fp32, as the checkpoint's network, whatever dtype its config names."""
    from textclf.training.fit import train

    cfg = compose_cfg(tmp_path / "run", tiny_bf16_model_dir, *toy_training(toy_csv), "trainer.max_epochs=1")
    _, objects = train(cfg)
    directory = export_checkpoint(objects["trainer"].checkpoint_callback.best_model_path, "hf", tmp_path)
    classifier = pipeline("text-classification", model=str(directory), device="cpu")
    assert classifier.model.dtype == torch.float32 and classifier("a great film")[0]["label"] in (
        "positive",
        "negative",
    )


def test_a_pooler_head_over_unit_length_embeddings_is_refused_by_hf_and_exported_to_onnx(
    tiny_model_dir: Path, toy_csv: Path, tmp_path: Path
) -> None:
    """Hugging Face's BERT head reads the pooler's output as it is: with `model.net.normalize` the export
    would predict something else, so it is refused; ONNX keeps the normalisation."""
    import onnxruntime

    from textclf.training.fit import train

    overrides = ("trainer.max_epochs=1", "model.net.head=pooler", "model.net.normalize=true")
    _, objects = train(compose_cfg(tmp_path / "run", tiny_model_dir, *toy_training(toy_csv), *overrides))
    checkpoint = objects["trainer"].checkpoint_callback.best_model_path
    with pytest.raises(Exception, match=r"^format=hf: a head over unit-length embeddings \(model.net.normalize\)"):
        export_checkpoint(checkpoint, "hf", tmp_path)
    session = onnxruntime.InferenceSession(str(export_checkpoint(checkpoint, "onnx", tmp_path) / "model.onnx"))
    predictor = Predictor.from_checkpoint(checkpoint, precision="32-true")
    texts = toy_reviews(6, seed=4)["text"].tolist()
    inputs = predictor.tokenizer(texts, padding=True, return_tensors="np", return_token_type_ids=False)
    (logits,) = session.run(None, {key: value.astype(np.int64) for key, value in inputs.items()})
    np.testing.assert_allclose(predictor.predict_proba(texts), torch.tensor(logits).softmax(-1).numpy(), atol=1e-4)
