"""`data.exclude_rows` and `data.relabel_file`: exactly the rows they name change, the test split stays,
and a bad file is one line naming it and its row."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from conftest import SPLIT_OPTIONS, toy_reviews

from textclf.data.sources import Source
from textclf.data.splits import prepare
from textclf.errors import DataError

SOURCE = Source("files", train_file="train.csv")


def prepared(frame: pd.DataFrame, **edits: str) -> dict[str, pd.DataFrame]:
    return prepare({"train": frame}, SOURCE, **SPLIT_OPTIONS, **edits)


def rows_of(splits: dict[str, pd.DataFrame], *names: str) -> pd.DataFrame:
    return pd.concat([splits[name] for name in names]).set_index("row").sort_index()


def test_exclude_rows_drops_exactly_the_rows_named_and_leaves_the_test_split(tmp_path: Path) -> None:
    frame = toy_reviews(200, seed=5)
    plain = prepared(frame)
    named = [0, 7, 150, 199, *plain["test"]["row"].iloc[:2]]  # two are test rows: left there
    pd.DataFrame({"row": named, "issue": "label"}).to_csv(tmp_path / "drop.csv", index=False)
    cleaned = prepared(frame, exclude_rows=str(tmp_path / "drop.csv"))
    before, after = rows_of(plain, "train", "val"), rows_of(cleaned, "train", "val")
    assert set(before.index) - set(after.index) == {0, 7, 150, 199} - set(plain["test"]["row"])
    assert set(after.index) <= set(before.index)
    assert cleaned["test"].equals(plain["test"])


def test_relabel_file_changes_exactly_the_labels_named(tmp_path: Path) -> None:
    frame = toy_reviews(200, seed=5)
    plain = prepared(frame)
    train_rows = list(plain["train"]["row"].iloc[:5])
    flipped = {row: "negative" if frame["label"][row] == "positive" else "positive" for row in train_rows}
    pd.DataFrame({"row": list(flipped), "label": list(flipped.values())}).to_csv(tmp_path / "new.csv", index=False)
    relabelled = prepared(frame, relabel_file=str(tmp_path / "new.csv"))
    before, after = rows_of(plain, "train", "val"), rows_of(relabelled, "train", "val")
    changed = sorted(before.index[before["label"] != after.loc[before.index, "label"]])
    assert changed == sorted(flipped)
    assert all(after.loc[row, "label"] == (label,) for row, label in flipped.items())
    assert list(after["text"]) == list(before["text"])


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("number\n3\n", "bad.csv: no column 'row' (columns: number)"),
        ("row\n3\nthree\n", "bad.csv: row 2 has row 'three', not a row number (0, 1, ...)"),
        ("row\n-1\n", "bad.csv: row 1 has row '-1', not a row number (0, 1, ...)"),
        ("row\n5\n900\n", "bad.csv: row 2 names row 900, which the data does not have (its rows are 0 to 199)"),
    ],
)
def test_a_bad_row_file_is_one_line_naming_the_file_and_its_row(tmp_path: Path, content: str, expected: str) -> None:
    (tmp_path / "bad.csv").write_text(content)
    with pytest.raises(DataError) as error:
        prepared(toy_reviews(200), exclude_rows=str(tmp_path / "bad.csv"))
    assert str(error.value) == f"{tmp_path / expected}"


def test_a_relabel_file_with_a_label_the_data_lacks_names_its_row(tmp_path: Path) -> None:
    (tmp_path / "new.csv").write_text("row,label\n1,positive\n2,posittive\n")
    with pytest.raises(DataError, match=r"new.csv: row 2 has label 'posittive', not a label the data has$"):
        prepared(toy_reviews(200), relabel_file=str(tmp_path / "new.csv"))
    with pytest.raises(DataError, match=r"missing.csv: file not found"):
        prepared(toy_reviews(200), relabel_file=str(tmp_path / "missing.csv"))


def test_the_settings_reach_the_data_module_and_its_log(make_cfg, toy_csv: Path, tmp_path: Path, caplog) -> None:
    from hydra.utils import instantiate

    pd.DataFrame({"row": [1, 2, 3]}).to_csv(tmp_path / "drop.csv", index=False)
    cfg = make_cfg("data=files", f"data.train_file={toy_csv}", f"data.exclude_rows={tmp_path / 'drop.csv'}")
    datamodule = instantiate(cfg.data)
    with caplog.at_level("INFO", logger="textclf"):
        datamodule.setup("fit")
    rows = set(pd.concat(datamodule.frames.values())["row"])
    assert not {1, 2, 3} & (rows - set(datamodule.frames["test"]["row"]))
    assert f"data.exclude_rows={tmp_path / 'drop.csv'}: dropped" in caplog.text
