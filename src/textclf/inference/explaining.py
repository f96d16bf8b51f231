"""`explain(cfg)`, behind `textclf-explain`: which tokens made a checkpoint predict what it did, for a file of
texts.

    textclf-explain ckpt_path=run/checkpoints/best.ckpt input=texts.txt output=explanations.jsonl
    textclf-explain ckpt_path=run/checkpoints/best.ckpt input=reviews.csv text_column=review output=report.html

The input is read as `textclf-predict` reads it (a text file, CSV/TSV/JSONL/Parquet columns, `-`), `chunk_size`
texts at a time, each chunk explained and written before the next is read: memory stays bounded. The output is
JSONL (one record per text, `explanation.py`), `-` (JSONL on standard output) or a self-contained HTML page;
a file appears only when complete.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import numpy as np
from omegaconf import DictConfig

from textclf.atomic import write_atomically
from textclf.errors import DataError
from textclf.inference.explanation import Explainer, explain_texts, target_indices
from textclf.inference.predictor import warn_of_unfitted
from textclf.inference.progress import TextProgress
from textclf.inference.reading import column_chunks, count_rows
from textclf.inference.report_html import HtmlReport
from textclf.log import log
from textclf.model.loading import load_trained
from textclf.model.trained import TrainedClassifier

OUTPUTS = ("jsonl", "html")


def output_kind(output: str) -> str:
    """jsonl (also for `-`, standard output) or html, checked before any work is done."""
    if output == "-":
        return "jsonl"
    suffix = Path(output).suffix.lower().lstrip(".")
    if suffix not in OUTPUTS:
        raise DataError(f"{output}: unknown output type '.{suffix}' (use .jsonl or .html, or - for stdout)")
    return suffix


class JsonlWriter:
    """Records as JSON lines, the same interface as `HtmlReport`."""

    def __init__(self, handle: TextIO) -> None:
        self.handle = handle

    def write(self, records: list[dict[str, Any]]) -> None:
        self.handle.writelines(json.dumps(record, ensure_ascii=False) + "\n" for record in records)

    def close(self) -> None:
        self.handle.flush()


def explain(cfg: DictConfig) -> dict[str, Any]:
    """Read, explain and write chunk by chunk; return counts and throughput."""
    kind, output, source = output_kind(str(cfg.output)), str(cfg.output), str(cfg.input)
    model = load_trained(cfg.ckpt_path)
    warn_of_unfitted(cfg.ckpt_path, model.hparams)
    target_indices(cfg.target, model, np.zeros((0, len(model.id2label))))  # an unknown target: before any work
    explainer = Explainer(model, cfg.method, cfg.n_steps, cfg.batch_size, cfg.baseline, cfg.precision, cfg.device)
    columns = [cfg.text_column]
    if explainer.predictor.pairs:
        columns.append(cfg.get("text_pair_column") or explainer.predictor.text_pair_column)
    texts, start = 0, time.perf_counter()

    def fill(handle: TextIO) -> None:
        nonlocal texts
        title = f"Why {Path(str(cfg.ckpt_path)).name} predicted what it did"
        subtitle = f"{source} · {cfg.method} · target: {cfg.target}"
        writer = HtmlReport(handle, title, subtitle) if kind == "html" else JsonlWriter(handle)
        with TextProgress("explaining", count_rows(source)) as progress:
            for chunk, *pairs in column_chunks(source, columns, cfg.chunk_size):
                writer.write(explainer.explain(chunk, pairs[0] if pairs else None, cfg.target, progress.advance))
                texts += len(chunk)
        if texts == 0:
            raise DataError(f"{source}: no texts to explain")
        writer.close()

    if output == "-":
        fill(sys.stdout)
    else:
        write_atomically(Path(output), lambda path: with_file(path, fill))
    seconds = time.perf_counter() - start
    stats = {"texts": texts, "seconds": round(seconds, 3), "texts_per_second": round(texts / seconds, 2)}
    log.info(f"explained {texts} texts in {stats['seconds']} s ({stats['texts_per_second']} texts/s) -> {output}")
    return stats


def with_file(path: Path, fill: Any) -> None:
    with path.open("w", encoding="utf-8") as handle:
        fill(handle)


def write_misclassified_page(
    path: Path,
    model: TrainedClassifier,
    texts: list[str],
    pairs: list[str] | None,
    true: list[str],
    device: str = "auto",
) -> bool:
    """misclassified.html (`textclf-eval`'s, and a training run's after its test): the most confident mistakes,
    each with the tokens that made the model predict what it did and the true label beside it; whether it was
    written. Skipped, with a line saying why, without captum."""
    try:
        import captum  # noqa: F401
    except ImportError:
        log.info(f"{path.name} not written: explanations need captum (pip install 'textclf[explain]')")
        return False
    records = explain_texts(model, texts, pairs, device=device)

    def fill(handle: TextIO) -> None:
        report = HtmlReport(handle, "The most confident mistakes", "tokens coloured towards the predicted label")
        report.write(records, [{"true": label} for label in true])
        report.close()

    write_atomically(path, lambda target: with_file(target, fill))
    log.info(f"{path}: {len(records)} mistakes with the tokens that made them")
    return True
