"""Where the text comes from: packaged datasets, the user's own files, and Hugging Face datasets.

Each source returns a `Splits` mapping (`frames.py`) of split name ("train", "val", "test") to a DataFrame
with a `text` and a `label` column (and `text_pair` where each example is a pair of texts). A source that has
no split of its own returns only "train" and the data module splits it. Packaged datasets are read by
`packaged.py`, Hugging Face datasets (`data=hf`) by `hf_datasets.py`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from textclf.data.frames import SPLITS, Splits
from textclf.data.packaged import PACKAGED, PAIRED
from textclf.errors import DataError, SettingError

if TYPE_CHECKING:
    from textclf.data.hf_datasets import HuggingFaceDataset


def read_table(
    path: str | Path, text_column: str, label_column: str | None, text_pair_column: str | None = None
) -> pd.DataFrame:
    """Read a CSV, TSV, JSONL or Parquet file into `text` (`text_pair`, `label`) columns, or fail with one line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty")
    suffix = path.suffix.lower()
    try:
        if suffix in {".csv", ".tsv", ".tab"}:
            # every cell as written: no number parsing ("007" stays "007"), no NA guessing ("NA" stays
            # "NA"), and a byte-order mark is not part of the first column's name
            frame = pd.read_csv(
                path, sep="\t" if suffix != ".csv" else ",", dtype=str, keep_default_na=False, encoding="utf-8-sig"
            )
        elif suffix in {".jsonl", ".json"}:
            frame = pd.read_json(path, lines=True, dtype=False)
        elif suffix == ".parquet":
            frame = pd.read_parquet(path)
        else:
            raise DataError(f"{path}: unknown file type '{suffix}' (use .csv, .tsv, .jsonl or .parquet)")
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 text (byte {error.start} cannot be decoded)") from None
    except (ValueError, pd.errors.ParserError) as error:
        if isinstance(error, DataError):
            raise
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DataError(f"{path}: cannot be parsed: {first_line}") from None
    if frame.empty:
        raise DataError(f"{path}: no data rows")
    wanted = [text_column] + [column for column in (text_pair_column, label_column) if column]
    missing = [column for column in wanted if column not in frame.columns]
    if missing:
        raise DataError(f"{path}: no column '{missing[0]}' (columns: {', '.join(map(str, frame.columns))})")
    # Arrow-backed strings (pandas' `str` dtype): the corpus is not held as Python objects
    result = pd.DataFrame({"text": frame[text_column].astype("str")})
    if text_pair_column:
        result["text_pair"] = frame[text_pair_column].astype("str")
    if label_column:
        result["label"] = frame[label_column]
    return result


@dataclass(frozen=True)
class Source:
    """Where the rows come from: a packaged dataset by name, `files` with the user's paths and columns, or
    `hf` with a Hugging Face dataset (`hub`)."""

    name: str
    train_file: str | None = None
    val_file: str | None = None
    test_file: str | None = None
    text_column: str = "text"
    label_column: str = "label"
    text_pair_column: str | None = None
    hub: HuggingFaceDataset | None = None

    def __post_init__(self) -> None:
        if self.name not in PACKAGED and self.name not in ("files", "hf"):
            raise DataError(
                f"data.source: unknown source '{self.name}' (choose one of {', '.join([*PACKAGED, 'files', 'hf'])})"
            )
        paired = "text_pair" if self.name in PAIRED else None
        if self.name in PACKAGED and self.text_pair_column != paired:
            raise SettingError(
                f"data.text_pair_column: the packaged source '{self.name}' "
                + ("holds pairs: set it to text_pair" if self.name in PAIRED else "holds single texts: leave it null")
            )

    @property
    def pairs(self) -> bool:
        """Whether each example is a pair of texts."""
        return self.text_pair_column is not None

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> Source:
        """The source a data config (or a data module's hyper-parameters) names."""
        fields = ("train_file", "val_file", "test_file", "text_column", "label_column", "text_pair_column")
        hub = None
        if settings["source"] == "hf":
            try:
                from textclf.data.hf_datasets import HuggingFaceDataset
            except ImportError:
                raise SettingError("data=hf needs the hf extra: pip install 'textclf[hf]'") from None
            hub = HuggingFaceDataset.from_settings(settings)
        return cls(
            settings["source"], hub=hub, **{key: settings[key] for key in fields if settings.get(key) is not None}
        )

    def file(self, split: str) -> str | None:
        return getattr(self, f"{split}_file") if self.name == "files" else None

    def where(self, split: str) -> str:
        """How an error names a split: its file or dataset, when it has one."""
        if self.hub is not None:
            return self.hub.where(split)
        path = self.file(split)
        return f"{path} ({split})" if path else split

    def label_names(self) -> list[str] | None:
        """The label names in the source's own order where it defines them (a ClassLabel feature)."""
        return self.hub.label_names(self.label_column) if self.hub is not None else None

    def fingerprint(self) -> str | None:
        """What identifies the rows without reading them, where the source knows (a Hugging Face dataset)."""
        if self.hub is None:
            return None
        return self.hub.fingerprint(self.text_column, self.label_column, self.text_pair_column)

    def read(self, train_required: bool = True) -> Splits:
        """The raw splits, each with `text` and `label` columns."""
        if self.hub is not None:
            return self.hub.read(self.text_column, self.label_column, train_required, self.text_pair_column)
        if self.name != "files":
            return PACKAGED[self.name]()
        if train_required and not self.train_file:
            raise DataError("data.train_file is required with data=files")
        return {
            split: read_table(path, self.text_column, self.label_column, self.text_pair_column)
            for split in SPLITS
            if (path := self.file(split))
        }
