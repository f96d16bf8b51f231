"""The inputs of `textclf-predict`: plain text lines, CSV/TSV/JSONL/Parquet columns or standard input,
read in chunks so that a file larger than memory streams through."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from textclf.errors import DataError, first_line

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
    for frame in frame_chunks(source, columns, chunk_size, all_columns=False):
        yield [["" if pd.isna(text) else str(text) for text in frame[column]] for column in columns]


def frame_chunks(source: str, columns: list[str], chunk_size: int, all_columns: bool = True) -> Iterator[pd.DataFrame]:
    """A file's rows `chunk_size` at a time as frames: every column of a table file (or only `columns`), or
    the lines of a text file or standard input as the column `columns[0]`. `columns` must be there."""
    path = Path(source)
    lines = source == "-" or path.suffix.lower() not in TABLES
    if lines and len(columns) > 1:
        raise DataError(
            f"{source}: a model of text pairs reads a CSV, TSV, JSONL or Parquet file with the columns "
            f"{' and '.join(columns)}, not lines"
        )
    if source == "-":
        yield from (
            pd.DataFrame({columns[0]: chunk}) for chunk in line_chunks(sys.stdin.buffer, "standard input", chunk_size)
        )
        return
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if lines:
        with path.open("rb") as handle:
            yield from (pd.DataFrame({columns[0]: chunk}) for chunk in line_chunks(handle, str(path), chunk_size))
        return
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty")
    try:
        yield from table_frames(path, path.suffix.lower(), columns, chunk_size, all_columns)
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 text (byte {error.start} cannot be decoded)") from None
    except (ValueError, pd.errors.ParserError, pa.ArrowException) as error:
        if isinstance(error, DataError):
            raise
        raise DataError(f"{path}: cannot be parsed: {first_line(error)}") from None


def table_frames(
    path: Path, suffix: str, columns: list[str], chunk_size: int, all_columns: bool
) -> Iterator[pd.DataFrame]:
    """A table file chunk by chunk, its `columns` checked (only they are read from Parquet unless `all_columns`)."""
    if suffix == ".parquet":
        for column in columns:
            check_column(path, column, pq.ParquetFile(path).schema_arrow.names)
        wanted = None if all_columns else columns
        for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_size, columns=wanted):
            yield batch.to_pandas()
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
            yield frame


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
