"""From a checkpoint to answers: evaluation, prediction, export, and their errors."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import compose_cfg, toy_reviews
from transformers import pipeline

from textclf.errors import CheckpointError, DataError
from textclf.export.exporter import export
from textclf.inference.evaluation import evaluate
from textclf.inference.prediction import predict
from textclf.inference.predictor import Predictor
from textclf.inference.reading import read_texts
from textclf.precision import inference_precision, resolve_precision
from textclf.training.lit_module import load_lit_module

FIXTURES = Path(__file__).parent / "fixtures"


def best_checkpoint(trained_toy) -> str:
    return trained_toy[2]["trainer"].checkpoint_callback.best_model_path


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


def test_predict_keeps_input_order_and_agrees_with_the_model(trained_toy, tmp_path: Path) -> None:
    frame = toy_reviews(300, seed=5)
    source = tmp_path / "texts.txt"
    source.write_text("\n".join(frame["text"]) + "\n")
    out = tmp_path / "predictions.jsonl"
    stats = predict(
        compose_cfg(
            tmp_path / "p",
            None,
            f"ckpt_path={best_checkpoint(trained_toy)}",
            f"input={source}",
            f"output={out}",
            "batch_size=32",
            config="predict",
        )
    )
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert stats["texts"] == 300 and [row["text"] for row in rows] == frame["text"].tolist()
    accuracy = np.mean([row["label"] == label for row, label in zip(rows, frame["label"])])
    assert accuracy >= 0.9
    assert all(abs(sum(row["probabilities"].values()) - 1) < 1e-4 for row in rows)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet", ".txt"])
def test_chunked_prediction_writes_the_whole_answers_in_input_order(
    trained_toy, tmp_path: Path, suffix: str, caplog
) -> None:
    texts = toy_reviews(95, seed=6)["text"].tolist()
    texts[10] = 'with "quotes", commas\tand tabs'
    source = tmp_path / f"input{suffix}"
    if suffix == ".txt":
        source.write_text("\n".join(texts) + "\n")
    elif suffix == ".jsonl":
        pd.DataFrame({"review": texts}).to_json(source, orient="records", lines=True)
    else:
        getattr(pd.DataFrame({"id": range(95), "review": texts}), f"to_{suffix[1:]}")(source, index=False)
    out = tmp_path / "predictions.csv"
    cfg = compose_cfg(
        tmp_path / "p",
        None,
        f"ckpt_path={best_checkpoint(trained_toy)}",
        f"input={source}",
        f"output={out}",
        "text_column=review",
        "chunk_size=7",  # 14 chunks, the last one short
        "precision=32-true",
        config="predict",
    )
    with caplog.at_level("INFO", logger="textclf"):
        predict(cfg)
    written = pd.read_csv(out, dtype={"text": str}, keep_default_na=False)
    assert written["text"].tolist() == texts
    predictor = Predictor.from_checkpoint(best_checkpoint(trained_toy), precision="32-true")
    whole = predictor.predict_proba(texts)  # all at once, not in chunks
    assert written["label"].tolist() == predictor.labels_of(whole)
    np.testing.assert_allclose(written[["prob_negative", "prob_positive"]].to_numpy(), whole, atol=2e-6)
    # stderr is not a terminal here: progress lines instead of a bar, one per chunk
    progress = [r.getMessage() for r in caplog.records if r.getMessage().startswith("predicting: ")]
    assert len(progress) == 14 and progress[-1].startswith("predicting: 95/95 texts, ")
    assert "texts/s" in progress[0] and "left" in progress[0]


def test_a_failed_prediction_leaves_no_output_file(trained_toy, tmp_path: Path) -> None:
    source = tmp_path / "input.txt"
    source.write_bytes(b"a good film\n" * 30 + b"caf\xe9\n")  # line 31, in the fifth chunk, is not UTF-8
    out = tmp_path / "predictions.jsonl"
    cfg = compose_cfg(
        tmp_path / "p",
        None,
        f"ckpt_path={best_checkpoint(trained_toy)}",
        f"input={source}",
        f"output={out}",
        "chunk_size=7",
        config="predict",
    )
    with pytest.raises(DataError, match="input.txt: line 31 is not UTF-8 text"):
        predict(cfg)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["input.txt"]  # nor a temporary file


def test_predict_reads_csv_and_stdin(trained_toy, tmp_path: Path) -> None:
    checkpoint = best_checkpoint(trained_toy)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "textclf",
            "predict",
            f"ckpt_path={checkpoint}",
            "input=-",
            "output=-",
            f"hydra.run.dir={tmp_path / 'p'}",
            "precision=32-true",
        ],
        input="a great great film\nan awful boring film\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "text,label,prob_negative,prob_positive"
    assert lines[1].startswith("a great great film,positive,") and lines[2].startswith("an awful boring film,negative,")
    assert "texts/s" in result.stderr


# Lightning's packages: importing them would add 0.7 s to a one-line textclf-predict's 3.5 s
LIGHTNING = ("lightning", "lightning_fabric", "pytorch_lightning")


def test_predict_export_and_eval_never_import_lightning_and_only_eval_torchmetrics() -> None:
    code = (
        "import json, sys\n"
        "loaded = {}\n"
        "for module in ('textclf.commands.predict', 'textclf.commands.export', 'textclf.commands.evaluate'):\n"
        "    __import__(module)\n"
        "    loaded[module] = sorted({name.split('.')[0] for name in sys.modules})\n"
        "print(json.dumps(loaded))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout)
    assert "torch" in loaded["textclf.commands.predict"]  # the check sees what was imported
    for module, absent in (
        ("textclf.commands.predict", (*LIGHTNING, "torchmetrics")),
        ("textclf.commands.export", (*LIGHTNING, "torchmetrics")),
        ("textclf.commands.evaluate", LIGHTNING),  # evaluation computes metrics: torchmetrics is its business
    ):
        assert not set(absent) & set(loaded[module]), f"{module} imports {set(absent) & set(loaded[module])}"


def test_predict_works_where_lightning_and_torchmetrics_cannot_be_imported(trained_toy, tmp_path: Path) -> None:
    """As if they were not installed: `None` in sys.modules makes any import of them fail."""
    checkpoint, texts = best_checkpoint(trained_toy), ["a great great film", "an awful boring film"]
    blocked = [*LIGHTNING, "torchmetrics"]
    code = (
        f"import runpy, sys; sys.modules.update(dict.fromkeys({blocked!r})); "
        "runpy.run_module('textclf.commands.predict', run_name='__main__')"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            f"ckpt_path={checkpoint}",
            "input=-",
            "output=-",
            f"hydra.run.dir={tmp_path / 'p'}",
            "precision=32-true",
        ],
        input="\n".join(texts) + "\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    predictor = Predictor.from_checkpoint(checkpoint, precision="32-true")
    probabilities = predictor.predict_proba(texts)
    rows = pd.read_csv(io.StringIO(result.stdout))
    assert rows["label"].tolist() == predictor.labels_of(probabilities) == ["positive", "negative"]
    np.testing.assert_allclose(rows[["prob_negative", "prob_positive"]], probabilities, atol=1e-5)


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


def test_plain_text_input_is_cut_at_newlines_only_and_must_be_utf8(tmp_path: Path) -> None:
    path = tmp_path / "texts.txt"
    path.write_bytes("\ufefffirst\u2028still first\r\nsecond\n\nfourth\n".encode())
    assert read_texts(str(path), "text") == ["first\u2028still first", "second", "", "fourth"]
    path.write_bytes(b"fine\nfine\ncaf\xe9\n")
    with pytest.raises(DataError, match=r"texts.txt: line 3 is not UTF-8 text"):
        read_texts(str(path), "text")


def test_int8_quantized_prediction_stays_close(trained_toy) -> None:
    texts = toy_reviews(200, seed=11)
    quantized = Predictor.from_checkpoint(best_checkpoint(trained_toy), quantize=True)
    assert "DynamicQuantizedLinear" in str(quantized.model)
    plain = Predictor.from_checkpoint(best_checkpoint(trained_toy), precision="32-true")
    labels = texts["label"].tolist()
    quantized_labels = quantized.labels_of(quantized.predict_proba(texts["text"].tolist()))
    assert np.mean([a == b for a, b in zip(quantized_labels, labels)]) >= 0.9
    agreement = np.mean(
        [a == b for a, b in zip(quantized_labels, plain.labels_of(plain.predict_proba(texts["text"].tolist())))]
    )
    assert agreement >= 0.95


def test_inference_keeps_its_weights_in_16_bit_where_that_is_fast_and_predicts_the_same(trained_toy) -> None:
    texts = toy_reviews(300, seed=8)["text"].tolist()
    fast = Predictor.from_checkpoint(best_checkpoint(trained_toy))
    reference = Predictor.from_checkpoint(best_checkpoint(trained_toy), precision="32-true")
    expected_dtype = torch.bfloat16 if resolve_precision("auto") == "bf16-mixed" else torch.float32
    assert inference_precision("auto") == ("bf16-true" if expected_dtype == torch.bfloat16 else "32-true")
    assert next(fast.model.parameters()).dtype == expected_dtype and fast.autocast_dtype is None
    agreement = np.mean(
        [
            a == b
            for a, b in zip(
                fast.labels_of(fast.predict_proba(texts)), reference.labels_of(reference.predict_proba(texts))
            )
        ]
    )
    assert agreement >= 0.98


def test_prediction_that_runs_out_of_memory_retries_with_smaller_slices(trained_toy, caplog) -> None:
    texts = toy_reviews(300, seed=5)["text"].tolist()
    predictor = Predictor.from_checkpoint(best_checkpoint(trained_toy), batch_size=64, precision="32-true")
    expected = predictor.predict_proba(texts)
    forward, sizes = predictor.model.forward, []

    def forward_with_little_memory(input_ids, attention_mask):
        sizes.append(len(input_ids))
        if len(input_ids) > 10:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return forward(input_ids, attention_mask)

    predictor.model.forward = forward_with_little_memory
    assert np.allclose(predictor.predict_proba(texts), expected, atol=1e-5)
    assert max(sizes) == 64 and sizes.count(64) == 1 and sizes[-1] <= 8  # halved once per failure, then kept
    assert "out of memory: predicting 8 texts at a time" in caplog.messages


def test_an_unknown_output_type_is_refused_before_any_work(tmp_path: Path) -> None:
    cfg = compose_cfg(
        tmp_path / "p",
        None,
        f"ckpt_path={tmp_path / 'never-loaded.ckpt'}",
        f"input={tmp_path / 'x.txt'}",
        f"output={tmp_path / 'out.xlsx'}",
        config="predict",
    )
    with pytest.raises(DataError, match=r"out.xlsx: unknown output type '.xlsx'"):
        predict(cfg)


@pytest.mark.slow
def test_ddp_sim_trains_over_two_processes_and_matches_a_single_process_evaluation(
    make_cfg, toy_csv: Path, tmp_path: Path
) -> None:
    from conftest import toy_training

    from textclf.training.fit import train

    cfg = make_cfg(
        *toy_training(toy_csv),
        "trainer=ddp_sim",
        "trainer.max_epochs=6",
        "callbacks.early_stopping=null",
    )
    metrics, _ = train(cfg)
    run = tmp_path / "run"
    assert sorted(p.name for p in run.iterdir() if not p.name.startswith(".")) == [
        "checkpoints",
        "metrics.json",
        "tensorboard",
    ]
    assert len(list((run / "checkpoints").glob("epoch*.ckpt"))) == 1
    saved = json.loads((run / "metrics.json").read_text())
    single = evaluate(
        compose_cfg(
            tmp_path / "eval",
            None,
            f"ckpt_path={saved['best_model_path']}",
            "data=files",
            f"data.train_file={toy_csv}",
            "precision=32-true",
            config="eval",
        )
    )
    for key in ("test/acc", "test/f1", "test/precision", "test/recall", "test/loss"):
        assert saved[key] == pytest.approx(single[key], abs=1e-5), key
    assert saved["test/acc"] >= 0.9


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
