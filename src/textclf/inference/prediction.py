"""`predict(cfg)`, behind `textclf-predict`: a checkpoint's answers on new text.

    textclf-predict ckpt_path=run/checkpoints/last.ckpt input=texts.txt output=predictions.csv

Input: a plain text file (one text per line), CSV/TSV/JSONL/Parquet with a text column, or `-` for
standard input. Output: CSV or JSONL (by its suffix; `-` writes CSV to standard output) with the predicted
label and the probability of every class, in input order. The input is read `chunk_size` texts at a time
and each chunk's predictions are written before the next is read, so memory stays bounded whatever the
input's size; inside a chunk, texts are batched by length for speed. The output file appears only when
complete.
"""

from __future__ import annotations

import time
from typing import Any

from omegaconf import DictConfig

from textclf.errors import DataError
from textclf.inference.predictor import Predictor
from textclf.inference.progress import TextProgress
from textclf.inference.reading import column_chunks, count_rows
from textclf.inference.writing import PredictionWriter, output_format, write_output
from textclf.log import log


def predict(cfg: DictConfig) -> dict[str, Any]:
    """Read, predict and write chunk by chunk (memory bounded whatever the input's size); return counts
    and throughput."""
    output_format(str(cfg.output))
    predictor = Predictor.from_settings(cfg, cfg.batch_size)
    source, texts = str(cfg.input), 0
    # the second text of pairs: the column the model was trained with, unless named here
    columns = [cfg.text_column]
    if predictor.pairs:
        columns.append(cfg.get("text_pair_column") or predictor.text_pair_column)
    start = time.perf_counter()

    def fill(writer: PredictionWriter) -> None:
        nonlocal texts
        with TextProgress("predicting", count_rows(source)) as progress:
            for chunk, *pairs in column_chunks(source, columns, cfg.chunk_size):
                second = pairs[0] if pairs else None
                probabilities = predictor.predict_proba(chunk, pairs=second)
                writer.write(chunk, predictor.labels_of(probabilities), probabilities, second)
                progress.advance(len(chunk))
        if writer.rows == 0:
            raise DataError(f"{source}: no texts to predict")
        texts = writer.rows

    write_output(str(cfg.output), predictor.id2label, fill, predictor.task.regression)
    seconds = time.perf_counter() - start
    stats = {"texts": texts, "seconds": round(seconds, 3), "texts_per_second": round(texts / seconds, 1)}
    log.info(
        f"predicted {stats['texts']} texts in {stats['seconds']} s ({stats['texts_per_second']} texts/s) "
        f"-> {cfg.output}"
    )
    return stats
