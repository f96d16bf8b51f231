"""`textclf-predict` and the Predictor: input order, chunks, formats, precision, quantization, memory."""

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
from conftest import LIGHTNING, best_checkpoint, compose_cfg, toy_reviews

from textclf.errors import DataError, SettingError
from textclf.inference.prediction import predict
from textclf.inference.predictor import Predictor
from textclf.inference.reading import read_texts
from textclf.inference.writing import output_format
from textclf.precision import inference_precision, resolve_precision


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


@pytest.mark.slow
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


@pytest.mark.slow
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
    with pytest.raises(SettingError, match=r"^output: '.*out.xlsx' is not an output \(a .csv or .jsonl file"):
        compose_cfg(
            tmp_path / "p",
            None,
            f"ckpt_path={tmp_path / 'never-loaded.ckpt'}",
            f"input={tmp_path / 'x.txt'}",
            f"output={tmp_path / 'out.xlsx'}",
            config="predict",
        )
    with pytest.raises(DataError, match=r"out.xlsx: unknown output type '.xlsx'"):  # predict() called directly
        output_format(str(tmp_path / "out.xlsx"))
