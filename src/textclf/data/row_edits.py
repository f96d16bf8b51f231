"""Acting on an audit: `data.exclude_rows=FILE` drops rows, `data.relabel_file=FILE` gives rows new labels.

Both files name rows by their number in the input (`row`, 0-based through the training file, then the
validation file, as `label_issues.csv` and `oof_predictions.parquet` do). The edits touch the training and
validation rows only: the test split is drawn before them, so a cleaned run is tested on the same rows as
the run it cleans.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from textclf.data.frames import Splits
from textclf.errors import DataError
from textclf.log import log

EDITED = ("train", "val")


def read_row_file(path: str, columns: tuple[str, ...]) -> pd.DataFrame:
    """A CSV/TSV/JSONL/Parquet file with `columns`, every cell as written, its `row` column as numbers."""
    file = Path(path)
    if not file.is_file():
        raise DataError(f"{path}: file not found")
    suffix = file.suffix.lower()
    try:
        if suffix == ".parquet":
            frame = pd.read_parquet(file).astype(str)
        elif suffix in {".jsonl", ".json"}:
            frame = pd.read_json(file, lines=True, dtype=False).astype(str)
        else:
            sep = "," if suffix == ".csv" else "\t"
            frame = pd.read_csv(file, sep=sep, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: cannot be parsed: {str(error).strip().splitlines()[0]}") from None
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise DataError(f"{path}: no column '{missing[0]}' (columns: {', '.join(map(str, frame.columns))})")
    numbers = pd.to_numeric(frame["row"].str.strip(), errors="coerce")
    bad = numbers.isna() | (numbers < 0) | (numbers != numbers.round())
    if bad.any():
        first = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(f"{path}: row {first + 1} has row '{frame['row'].iloc[first]}', not a row number (0, 1, ...)")
    return frame.assign(row=numbers.astype(np.int64))


def check_in_range(path: str, rows: pd.Series, total: int) -> None:
    """Every row named is a row of the input (0 to total - 1)."""
    outside = rows >= total
    if outside.any():
        first = int(np.flatnonzero(outside.to_numpy())[0])
        raise DataError(
            f"{path}: row {first + 1} names row {rows.iloc[first]}, which the data does not have "
            f"(its rows are 0 to {total - 1})"
        )


@dataclass(frozen=True)
class RowEdits:
    """The rows to drop (`exclude_rows`) and relabel (`relabel_file`), and how to parse a new label."""

    exclude_rows: str | None
    relabel_file: str | None
    multi_label: bool
    label_delimiter: str | None
    regression: bool

    def apply(self, splits: Splits, total: int) -> Splits:
        """The splits with the edits made to their training and validation rows; `total`: the input's rows."""
        if self.relabel_file:
            splits = self.relabelled(splits, total)
        if self.exclude_rows:
            splits = self.excluded(splits, total)
        return splits

    def excluded(self, splits: Splits, total: int) -> Splits:
        rows = read_row_file(self.exclude_rows, ("row",))["row"]
        check_in_range(self.exclude_rows, rows, total)
        named = set(rows.tolist())
        edited = dict(splits)
        dropped = 0
        for split in EDITED:
            if split in splits:
                keep = ~splits[split]["row"].isin(named)
                dropped += int((~keep).sum())
                edited[split] = splits[split].loc[keep].reset_index(drop=True)
        in_test = int(splits["test"]["row"].isin(named).sum()) if "test" in splits else 0
        log.info(
            f"data.exclude_rows={self.exclude_rows}: dropped {dropped} of the {len(named)} rows it names"
            + (f"; {in_test} are test rows, left in the test split" if in_test else "")
        )
        return edited

    def relabelled(self, splits: Splits, total: int) -> Splits:
        table = read_row_file(self.relabel_file, ("row", "label"))
        check_in_range(self.relabel_file, table["row"], total)
        new_labels = dict(zip(table["row"], self.parsed_labels(table, splits)))
        edited, changed = dict(splits), 0
        for split in EDITED:
            if split in splits:
                frame = splits[split]
                hit = frame["row"].isin(new_labels)
                changed += int(hit.sum())
                labels = [
                    new_labels[row] if named else old for row, old, named in zip(frame["row"], frame["label"], hit)
                ]
                edited[split] = frame.assign(label=labels)
        log.info(f"data.relabel_file={self.relabel_file}: relabelled {changed} of the {len(new_labels)} rows it names")
        return edited

    def parsed_labels(self, table: pd.DataFrame, splits: Splits) -> list[tuple[str, ...]]:
        """The file's labels as label tuples, each checked: a number (regression) or a label the data has."""
        if self.regression:
            numbers = pd.to_numeric(table["label"], errors="coerce")
            bad = numbers.isna() | ~np.isfinite(numbers)
        else:
            known = {name for frame in splits.values() for names in frame["label"] for name in names}
            parsed = [self.parse(value) for value in table["label"]]
            bad = pd.Series([not names or not set(names) <= known for names in parsed])
        if bad.any():
            first = int(np.flatnonzero(bad.to_numpy())[0])
            wanted = "a number (data.task=regression)" if self.regression else "a label the data has"
            raise DataError(
                f"{self.relabel_file}: row {first + 1} has label '{table['label'].iloc[first]}', not {wanted}"
            )
        return [(str(value).strip(),) for value in table["label"]] if self.regression else parsed

    def parse(self, value: str) -> tuple[str, ...]:
        if not self.multi_label or self.label_delimiter is None:
            return (value.strip(),) if value.strip() else ()
        return tuple(part.strip() for part in value.split(self.label_delimiter) if part.strip())
