"""Rows from a Hugging Face `datasets` dataset (`data=hf`): a hub name, a local folder of Parquet, CSV or
JSON files, or a folder written by `save_to_disk`.

The text column stays in Arrow: the frames handed on wrap the dataset's memory-mapped column without a
copy, so a large corpus is never a list of Python strings. Label names come from a `ClassLabel` feature
(plain or inside a list, for multi-label data) when the label column has one, in the dataset's own id
order. The dataset's fingerprint identifies its rows, so the token cache needs not hash the texts.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from textclf.config import plain
from textclf.data.frames import Splits
from textclf.data.settings import DATASET_SPLITS
from textclf.errors import DataError, first_line


def loading_script(path: str) -> Path | None:
    """The local loading script `path` names (a .py file, or a folder holding `<folder name>.py`)."""
    candidate = Path(path)
    if candidate.suffix == ".py":
        return candidate
    inside = candidate / f"{candidate.name}.py"
    return inside if inside.is_file() else None


def load_saved_dataset(folder: str) -> datasets.Dataset | datasets.DatasetDict:
    """A folder written by `save_to_disk`; anything else is a DataError naming what is wrong with it."""
    if not Path(folder).is_dir():
        raise DataError(f"{folder}: data.from_disk is not a folder")
    try:
        return datasets.load_from_disk(folder)
    except FileNotFoundError:
        raise DataError(f"{folder}: not a dataset written by save_to_disk (no state.json)") from None


def load_named_dataset(
    path: str, config_name: str | None, data_files: Any, revision: str | None, trust_remote_code: bool
) -> datasets.Dataset | datasets.DatasetDict:
    """A hub dataset or a local folder by `load_dataset`; its failures become DataErrors that say what to do."""
    script = loading_script(path)
    if script is not None and not trust_remote_code:
        raise DataError(
            f"{path}: a loading script ({script.name}) runs the dataset's own code; "
            "set data.trust_remote_code=true to allow it"
        )
    if path.startswith(("/", ".", "~")) and not Path(path).expanduser().exists():
        raise DataError(f"{path}: data.path: no such file or folder")
    options = {"trust_remote_code": True} if trust_remote_code else {}
    try:
        return datasets.load_dataset(path, config_name, data_files=data_files, revision=revision, **options)
    except datasets.exceptions.DatasetNotFoundError:
        raise DataError(
            f"{path}: no such local folder, and no dataset of that name on the Hugging Face hub "
            "(or it needs a token: hf auth login)"
        ) from None
    except ConnectionError as error:
        raise DataError(
            f"{path}: not a local folder, and the Hugging Face hub cannot be reached "
            f"(a hub dataset needs network access): {first_line(error)}"
        ) from None
    except OSError as error:
        raise DataError(f"{path}: cannot be read: {first_line(error)}") from None
    except RuntimeError as error:
        if "scripts are no longer supported" in str(error):
            raise DataError(
                f"{path}: a dataset with a loading script; datasets {datasets.__version__} no longer "
                "runs them (convert it to Parquet, or use datasets<4 with data.trust_remote_code=true)"
            ) from None
        raise
    except (ValueError, datasets.exceptions.DatasetsError) as error:
        raise DataError(f"{path}: cannot be loaded: {first_line(error)}") from None


STANDARD_SPLIT_NAMES = tuple(DATASET_SPLITS.items())


@dataclass(frozen=True)
class HuggingFaceDataset:
    """A `datasets` dataset and how its split names map to textclf's train, val and test."""

    path: str | None = None
    config_name: str | None = None
    data_files: Any = None
    revision: str | None = None
    from_disk: str | None = None
    trust_remote_code: bool = False
    # (textclf split, the dataset's split name or None)
    split_names: tuple[tuple[str, str | None], ...] = STANDARD_SPLIT_NAMES

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> HuggingFaceDataset:
        if not settings.get("path") and not settings.get("from_disk"):
            raise DataError("data=hf needs data.path (a hub name or a local folder) or data.from_disk (a saved one)")
        if settings.get("path") and settings.get("from_disk"):
            raise DataError("data.path and data.from_disk both set: choose one")
        split_names = plain(settings.get("splits")) or {}
        unknown = set(split_names) - {"train", "val", "test"}
        if unknown:
            raise DataError(f"data.splits: unknown key '{sorted(unknown)[0]}' (use train, val and test)")
        data_files = plain(settings.get("data_files"))
        return cls(
            path=settings.get("path"),
            config_name=settings.get("config_name"),
            data_files=json.dumps(data_files) if data_files is not None else None,  # hashable
            revision=settings.get("revision"),
            from_disk=settings.get("from_disk"),
            trust_remote_code=bool(settings.get("trust_remote_code")),
            # over the dataset's usual names (train, validation, test)
            split_names=tuple((dict(STANDARD_SPLIT_NAMES) | split_names).items()),
        )

    @property
    def location(self) -> str:
        return str(self.from_disk or self.path)

    def dataset_split(self, split: str) -> str | None:
        return dict(self.split_names).get(split)

    def where(self, split: str) -> str:
        """How an error names a split: the dataset and its own split name."""
        name = self.dataset_split(split)
        return f"{self.location} (split '{name}')" if name else f"{self.location} ({split})"

    @cached_property
    def dataset(self) -> datasets.DatasetDict:
        """The whole dataset, loaded once; a single `Dataset` counts as its train split."""
        if self.from_disk:
            loaded = load_saved_dataset(self.from_disk)
        else:
            data_files = json.loads(self.data_files) if self.data_files is not None else None
            loaded = load_named_dataset(self.path, self.config_name, data_files, self.revision, self.trust_remote_code)
        return loaded if isinstance(loaded, datasets.DatasetDict) else datasets.DatasetDict({"train": loaded})

    def split(self, split: str, train_required: bool) -> datasets.Dataset | None:
        """The dataset's split mapped to `split`; None when it has none (val and test are then split off
        train). A missing train split is an error naming the splits there are."""
        name = self.dataset_split(split)
        if name is not None and name in self.dataset:
            return self.dataset[name]
        if split == "train" and train_required:
            raise DataError(
                f"{self.location}: no split '{name}' for data.splits.train (the dataset has: {', '.join(self.dataset)})"
            )
        return None

    def label_feature(self, label_column: str) -> datasets.ClassLabel | None:
        """The label column's ClassLabel (its own, or that of each list item for multi-label data)."""
        for dataset in self.dataset.values():
            feature = dataset.features.get(label_column)
            if isinstance(feature, (datasets.List, datasets.Sequence, datasets.LargeList)):
                feature = feature.feature
            if isinstance(feature, datasets.ClassLabel):
                return feature
        return None

    def label_names(self, label_column: str) -> list[str] | None:
        feature = self.label_feature(label_column)
        return list(feature.names) if feature is not None else None

    def fingerprint(self, text_column: str, label_column: str, text_pair_column: str | None = None) -> str:
        """What identifies the rows read: each mapped split's fingerprint and the columns taken."""
        parts = {
            split: [name, self.dataset[name]._fingerprint]
            for split, name in self.split_names
            if name is not None and name in self.dataset
        }
        columns = [text_column, label_column, *([text_pair_column] if text_pair_column else [])]
        payload = json.dumps([parts, *columns], sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:32]

    def read(
        self,
        text_column: str,
        label_column: str | None,
        train_required: bool = True,
        text_pair_column: str | None = None,
    ) -> Splits:
        """`text` (and `text_pair`; Arrow-backed, not copied) and `label` (names) frames of the mapped splits."""
        label_feature = self.label_feature(label_column) if label_column else None
        frames = {}
        for split in ("train", "val", "test"):
            dataset = self.split(split, train_required)
            if dataset is not None:
                frames[split] = self.frame(dataset, split, text_column, label_column, label_feature, text_pair_column)
        return frames

    def frame(
        self,
        dataset: datasets.Dataset,
        split: str,
        text_column: str,
        label_column: str | None,
        label_feature: datasets.ClassLabel | None,
        text_pair_column: str | None = None,
    ) -> pd.DataFrame:
        wanted = [text_column] + [column for column in (text_pair_column, label_column) if column]
        missing = [column for column in wanted if column not in dataset.column_names]
        if missing:
            raise DataError(
                f"{self.where(split)}: no column '{missing[0]}' (columns: {', '.join(dataset.column_names)})"
            )
        if len(dataset) == 0:
            raise DataError(f"{self.where(split)}: no data rows")
        # a slice of the memory-mapped table: no copy (a gather where the dataset has an indices mapping)
        table = dataset.select_columns(wanted).with_format("arrow")[:]
        frame = pd.DataFrame({"text": self.text_values(table, split, text_column)})
        if text_pair_column:
            frame["text_pair"] = self.text_values(table, split, text_pair_column)
        if label_column:
            frame["label"] = label_values(table.column(label_column), label_feature)
        return frame

    def text_values(self, table: pa.Table, split: str, column: str) -> pd.Series:
        """A text column as Arrow-backed strings; other types cast to text where Arrow can."""
        text = table.column(column)
        if not (pa.types.is_string(text.type) or pa.types.is_large_string(text.type)):
            try:
                text = pc.cast(text, pa.large_string())
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                raise DataError(f"{self.where(split)}: column '{column}' holds {text.type}, not text") from None
        return text.to_pandas()


def label_values(column: pa.ChunkedArray, feature: datasets.ClassLabel | None) -> Any:
    """Label names for ids of a ClassLabel (a list of names per row for multi-label data; None where
    the dataset marks a row unlabelled with -1), else the values as they are."""
    if feature is None:
        return column.to_pandas()
    names = np.array([*feature.names, None], dtype=object)  # id -1 (no label) picks the None
    if pa.types.is_integer(column.type):
        return names[pc.fill_null(column, -1).to_numpy()]
    return [None if row is None else [names[i] for i in row] for row in column.to_pylist()]
