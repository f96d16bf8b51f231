"""`textclf-predict`: a checkpoint's answers on new text.

    textclf-predict ckpt_path=run/checkpoints/last.ckpt input=texts.txt output=predictions.csv

Input: a plain text file (one text per line), CSV/TSV/JSONL/Parquet with a text column, or `-` for
standard input. Output: CSV or JSONL (by its suffix; `-` writes CSV to standard output) with the predicted
label and the probability of every class, in input order. Texts are batched by length for speed.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from textclf.cli import command_main
from textclf.errors import DataError
from textclf.files import write_atomically
from textclf.inference import Predictor
from textclf.log import log
from textclf.sources import read_table


def read_texts(source: str, text_column: str) -> list[str]:
    """Texts from a file or standard input, one per line for plain text; a one-line error otherwise."""
    if source == "-":
        return split_lines(sys.stdin.read())
    path = Path(source)
    if path.suffix.lower() in {".csv", ".tsv", ".tab", ".jsonl", ".json", ".parquet"}:
        frame = read_table(path, text_column, None)
        return ["" if pd.isna(text) else str(text) for text in frame["text"]]
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise DataError(f"{path}: line {line} is not UTF-8 text") from None
    return split_lines(text)


def split_lines(text: str) -> list[str]:
    """Lines cut at \n (and \r\n) only: str.splitlines would also cut inside texts at \x85, \u2028, ..."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def predictions_frame(
    texts: list[str], labels: list[Any], probabilities: np.ndarray, id2label: dict[int, str]
) -> pd.DataFrame:
    frame = pd.DataFrame(
        {"text": texts, "label": ["|".join(label) if isinstance(label, list) else label for label in labels]}
    )
    for index, name in id2label.items():
        frame[f"prob_{name}"] = probabilities[:, index].round(6)
    return frame


def output_format(output: str) -> str:
    """csv, jsonl or stdout, checked before any work is done."""
    if output == "-":
        return "stdout"
    suffix = Path(output).suffix.lower().lstrip(".")
    if suffix not in ("csv", "jsonl"):
        raise DataError(f"{output}: unknown output type '.{suffix}' (use .csv or .jsonl, or - for stdout)")
    return suffix


def write_predictions(
    output: str, texts: list[str], labels: list[Any], probabilities: np.ndarray, id2label: dict[int, str]
) -> None:
    kind = output_format(output)
    if kind == "stdout":
        predictions_frame(texts, labels, probabilities, id2label).to_csv(sys.stdout, index=False)
        return
    path = Path(output)
    if kind == "jsonl":

        def write(target: Path) -> None:
            with target.open("w", encoding="utf-8") as handle:
                for text, label, row in zip(texts, labels, probabilities):
                    probs = {id2label[i]: round(float(p), 6) for i, p in enumerate(row)}
                    handle.write(
                        json.dumps({"text": text, "label": label, "probabilities": probs}, ensure_ascii=False) + "\n"
                    )
    else:

        def write(target: Path) -> None:
            predictions_frame(texts, labels, probabilities, id2label).to_csv(target, index=False)

    write_atomically(path, write)


def predict(cfg: DictConfig) -> dict[str, Any]:
    """Read, predict, write; return counts and throughput."""
    output_format(str(cfg.output))
    predictor = Predictor.from_checkpoint(
        cfg.ckpt_path,
        batch_size=cfg.batch_size,
        max_length=cfg.max_length,
        truncation=cfg.truncation,
        precision=cfg.precision,
        device=cfg.device,
        quantize=cfg.quantize,
    )
    texts = read_texts(str(cfg.input), cfg.text_column)
    if not texts:
        raise DataError(f"{cfg.input}: no texts to predict")
    start = time.perf_counter()
    probabilities = predictor.predict_proba(texts, show_progress=len(texts) >= 2_000)
    seconds = time.perf_counter() - start
    write_predictions(str(cfg.output), texts, predictor.labels_of(probabilities), probabilities, predictor.id2label)
    stats = {"texts": len(texts), "seconds": round(seconds, 3), "texts_per_second": round(len(texts) / seconds, 1)}
    log.info(
        f"predicted {stats['texts']} texts in {stats['seconds']} s ({stats['texts_per_second']} texts/s) "
        f"-> {cfg.output}"
    )
    return stats


main = command_main(predict, "predict")

if __name__ == "__main__":
    main()
