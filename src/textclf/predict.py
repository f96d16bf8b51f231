"""`textclf-predict`: a checkpoint's answers on new text.

    textclf-predict ckpt_path=run/checkpoints/last.ckpt input=texts.txt output=predictions.csv

Input: a plain text file (one text per line), CSV/TSV/JSONL/Parquet with a text column, or `-` for
standard input. Output: CSV or JSONL (by its suffix; `-` writes CSV to standard output) with the predicted
label and the probability of every class, in input order. The input is read `chunk_size` texts at a time
and each chunk's predictions are written before the next is read, so memory stays bounded whatever the
input's size; inside a chunk, texts are batched by length for speed. The output file appears only when
complete.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from omegaconf import DictConfig

from textclf.cli import command_main
from textclf.errors import DataError, first_line
from textclf.files import write_atomically
from textclf.inference import Predictor
from textclf.log import log
from textclf.text_progress import TextProgress

CHUNK = 10_000  # read_texts' chunks; textclf-predict's come from its config (chunk_size)


TABLES = {".csv", ".tsv", ".tab", ".jsonl", ".json", ".parquet"}


def text_chunks(source: str, text_column: str, chunk_size: int) -> Iterator[list[str]]:
    """Texts from a file or standard input, `chunk_size` at a time (see `column_chunks`)."""
    for (texts,) in column_chunks(source, [text_column], chunk_size):
        yield texts


def column_chunks(source: str, columns: list[str], chunk_size: int) -> Iterator[list[list[str]]]:
    """The text columns of a file (one list per column; pairs of texts have two), or the lines of a text
    file or standard input, `chunk_size` rows at a time, so that no input is held whole: CSV, TSV and JSONL
    through pandas' chunked readers, Parquet by record batches, plain text (and `-`) by lines. One-line
    errors name the file, the column or the line."""
    path = Path(source)
    lines = source == "-" or path.suffix.lower() not in TABLES
    if lines and len(columns) > 1:
        raise DataError(
            f"{source}: a model of text pairs reads a CSV, TSV, JSONL or Parquet file with the columns "
            f"{' and '.join(columns)}, not lines"
        )
    if source == "-":
        yield from ([chunk] for chunk in line_chunks(sys.stdin.buffer, "standard input", chunk_size))
        return
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    suffix = path.suffix.lower()
    if lines:
        with path.open("rb") as handle:
            yield from ([chunk] for chunk in line_chunks(handle, str(path), chunk_size))
        return
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty")
    try:
        for table in table_chunks(path, suffix, columns, chunk_size):
            yield [["" if pd.isna(text) else str(text) for text in texts] for texts in table]
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 text (byte {error.start} cannot be decoded)") from None
    except (ValueError, pd.errors.ParserError, pa.ArrowException) as error:
        if isinstance(error, DataError):
            raise
        raise DataError(f"{path}: cannot be parsed: {first_line(error)}") from None


def table_chunks(path: Path, suffix: str, columns: list[str], chunk_size: int) -> Iterator[list[Any]]:
    """The text columns of a table file, chunk by chunk."""
    if suffix == ".parquet":
        for column in columns:
            check_column(path, column, pq.ParquetFile(path).schema_arrow.names)
        for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_size, columns=columns):
            yield [batch.column(column).to_pylist() for column in columns]
        return
    if suffix in {".jsonl", ".json"}:
        reader = pd.read_json(path, lines=True, dtype=False, chunksize=chunk_size)
    else:
        # as sources.read_table reads: every cell as written, no NA guessing, no byte-order mark
        sep = "\t" if suffix != ".csv" else ","
        header = pd.read_csv(path, sep=sep, nrows=0, encoding="utf-8-sig").columns
        for column in columns:
            check_column(path, column, header)
        reader = pd.read_csv(
            path, sep=sep, dtype=str, keep_default_na=False, encoding="utf-8-sig", chunksize=chunk_size
        )
    with reader:
        for frame in reader:
            for column in columns:
                check_column(path, column, frame.columns)
            yield [frame[column] for column in columns]


def check_column(path: Path, column: str, columns: Any) -> None:
    if column not in columns:
        raise DataError(f"{path}: no column '{column}' (columns: {', '.join(map(str, columns))})")


def line_chunks(handle: BinaryIO, name: str, chunk_size: int) -> Iterator[list[str]]:
    """Lines cut at \n (and \r\n) only: str.splitlines would also cut inside texts at \x85, \u2028, ...
    A byte-order mark is dropped; a line that is not UTF-8 is an error naming it."""
    chunk: list[str] = []
    for number, raw in enumerate(handle, start=1):
        try:
            line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError:
            raise DataError(f"{name}: line {number} is not UTF-8 text") from None
        chunk.append(line.removesuffix("\n").removesuffix("\r"))
        if len(chunk) == chunk_size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def read_texts(source: str, text_column: str) -> list[str]:
    """Every text of a file or standard input (prediction itself reads them chunk by chunk)."""
    return [text for chunk in text_chunks(source, text_column, CHUNK) for text in chunk]


def count_rows(source: str) -> int | None:
    """About how many texts a file holds, for the progress bar: Parquet's row count, else its lines
    (counted in one pass over the bytes); None for standard input."""
    if source == "-" or not Path(source).is_file():
        return None
    if Path(source).suffix.lower() == ".parquet":
        return pq.ParquetFile(source).metadata.num_rows
    lines = 0
    with open(source, "rb") as handle:
        while block := handle.read(1 << 24):
            lines += block.count(b"\n")
    header = Path(source).suffix.lower() in {".csv", ".tsv", ".tab"}
    return max(lines - header, 0)


def predictions_frame(
    texts: list[str],
    labels: list[Any],
    probabilities: np.ndarray,
    id2label: dict[int, str],
    pairs: list[str] | None = None,
    regression: bool = False,
) -> pd.DataFrame:
    """One row per text: the label and each class's probability, or (regression) the score."""
    frame = pd.DataFrame({"text": texts} | ({"text_pair": pairs} if pairs is not None else {}))
    frame["label"] = ["|".join(label) if isinstance(label, list) else label for label in labels]
    if regression:
        return frame.rename(columns={"label": id2label[0]})
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


class PredictionWriter:
    """Appends chunks of predictions to a CSV (one header) or JSONL file, or CSV on standard output. A
    regression model's rows hold its score under the score's name instead of a label and probabilities."""

    def __init__(self, target: Path | None, kind: str, id2label: dict[int, str], regression: bool = False) -> None:
        self.target, self.kind, self.id2label, self.rows = target, kind, id2label, 0
        self.regression = regression

    def write(
        self, texts: list[str], labels: list[Any], probabilities: np.ndarray, pairs: list[str] | None = None
    ) -> None:
        first = self.rows == 0
        self.rows += len(texts)
        if self.kind == "jsonl":
            with self.target.open("w" if first else "a", encoding="utf-8") as handle:
                for number, (text, label, row) in enumerate(zip(texts, labels, probabilities)):
                    record = {"text": text} | ({"text_pair": pairs[number]} if pairs is not None else {})
                    if self.regression:
                        record[self.id2label[0]] = label
                    else:
                        probs = {self.id2label[i]: round(float(p), 6) for i, p in enumerate(row)}
                        record |= {"label": label, "probabilities": probs}
                    handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            return
        frame = predictions_frame(texts, labels, probabilities, self.id2label, pairs, self.regression)
        if self.target is None:
            frame.to_csv(sys.stdout, index=False, header=first)
        else:
            frame.to_csv(self.target, index=False, header=first, mode="w" if first else "a")


def write_output(
    output: str, id2label: dict[int, str], fill: Callable[[PredictionWriter], None], regression: bool = False
) -> None:
    """`fill(writer)` writes every chunk; a file is written beside `output` and renamed at the end, so a
    killed or failed run leaves no part of one (and the previous file, if any, untouched)."""
    kind = output_format(output)
    if kind == "stdout":
        fill(PredictionWriter(None, "csv", id2label, regression))
    else:
        write_atomically(Path(output), lambda target: fill(PredictionWriter(target, kind, id2label, regression)))


def write_predictions(
    output: str, texts: list[str], labels: list[Any], probabilities: np.ndarray, id2label: dict[int, str]
) -> None:
    write_output(output, id2label, lambda writer: writer.write(texts, labels, probabilities))


def predict(cfg: DictConfig) -> dict[str, Any]:
    """Read, predict and write chunk by chunk (memory bounded whatever the input's size); return counts
    and throughput."""
    output_format(str(cfg.output))
    predictor = Predictor.from_checkpoint(
        cfg.ckpt_path,
        batch_size=cfg.batch_size,
        max_length=cfg.max_length,
        truncation=cfg.truncation,
        precision=cfg.precision,
        device=cfg.device,
        quantize=cfg.quantize,
        window_aggregation=cfg.get("window_aggregation"),
    )
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


main = command_main(predict, "predict")

if __name__ == "__main__":
    main()
