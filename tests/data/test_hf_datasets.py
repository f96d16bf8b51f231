"""data=hf: Hugging Face datasets saved with save_to_disk or as a folder of Parquet files, built locally."""

from __future__ import annotations

from pathlib import Path

import datasets
import pandas as pd
import pytest
from conftest import toy_pairs, toy_reviews

from textclf.data import tokenization
from textclf.errors import DataError
from textclf.training.datamodule import TextClassificationDataModule
from textclf.training.fit import train

CLASSES = ["positive", "negative"]  # not alphabetical: the ClassLabel's order must win


@pytest.fixture(autouse=True)
def local_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No hub, and load_dataset's Arrow copies in the test's folder."""
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")


def class_label_dataset(frame: pd.DataFrame) -> datasets.Dataset:
    features = datasets.Features({"review": datasets.Value("string"), "sentiment": datasets.ClassLabel(names=CLASSES)})
    return datasets.Dataset.from_dict(
        {"review": frame["text"].tolist(), "sentiment": frame["label"].tolist()}, features=features
    )


@pytest.fixture
def saved_dict(tmp_path: Path) -> Path:
    """A DatasetDict (train, validation, test) with a ClassLabel, written by save_to_disk."""
    frame = toy_reviews(600)
    dataset = class_label_dataset(frame)
    parts = dataset.train_test_split(test_size=0.2, seed=0)
    held = parts["test"].train_test_split(test_size=0.5, seed=0)
    path = tmp_path / "saved"
    datasets.DatasetDict({"train": parts["train"], "validation": held["train"], "test": held["test"]}).save_to_disk(
        path
    )
    return path


def module(tiny_model_dir: Path, tmp_path: Path, **settings) -> TextClassificationDataModule:
    settings = {"text_column": "review", "label_column": "sentiment", **settings}
    return TextClassificationDataModule(
        source="hf", tokenizer=str(tiny_model_dir), cache_dir=str(tmp_path / "cache"), **settings
    )


@pytest.mark.slow
def test_a_saved_dataset_dict_trains_with_the_class_label_names(make_cfg, saved_dict: Path) -> None:
    cfg = make_cfg(
        "data=hf",
        f"data.from_disk={saved_dict}",
        "data.text_column=review",
        "data.label_column=sentiment",
        "model.lr=3e-3",
        "trainer.max_epochs=4",
        "data.batch_size=16",
        "trainer.precision=32-true",
        "model.net.freeze_embeddings=none",
    )
    metrics, objects = train(cfg)
    assert objects["model"].id2label == {0: "positive", 1: "negative"}  # the dataset's ids, not sorted names
    assert objects["datamodule"].describe()["splits"] == {"train": 480, "val": 60, "test": 60}
    assert metrics["test/acc"] > 0.9


def test_a_parquet_folder_with_a_missing_val_split_splits_it_off(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "parquet"
    folder.mkdir()
    toy_reviews(400).rename(columns={"text": "review", "label": "sentiment"}).to_parquet(folder / "train.parquet")
    toy_reviews(50, seed=1).rename(columns={"text": "review", "label": "sentiment"}).to_parquet(folder / "test.parquet")
    data = module(tiny_model_dir, tmp_path, path=str(folder), val_fraction=0.25)
    data.setup()
    assert data.describe() == {"splits": {"train": 300, "test": 50, "val": 100}, "labels": ["negative", "positive"]}
    assert str(data.frames["train"]["text"].dtype) == "str"  # Arrow-backed, not Python objects


def test_split_names_are_mapped_by_config(tiny_model_dir: Path, tmp_path: Path) -> None:
    dataset = class_label_dataset(toy_reviews(300))
    path = tmp_path / "renamed"
    datasets.DatasetDict({"fit": dataset.select(range(200)), "dev": dataset.select(range(200, 300))}).save_to_disk(path)
    data = module(tiny_model_dir, tmp_path, from_disk=str(path), splits={"train": "fit", "val": "dev", "test": None})
    data.setup()
    assert data.describe()["splits"] == {"train": 180, "val": 100, "test": 20}


def test_multi_label_from_a_sequence_of_class_labels(tiny_model_dir: Path, tmp_path: Path) -> None:
    names = ["plot", "acting", "music"]
    rows = [([0], "a plot"), ([1, 2], "acting and music"), ([0, 1], "plot and acting"), ([2], "music")] * 30
    features = datasets.Features(
        {"text": datasets.Value("string"), "label": datasets.List(datasets.ClassLabel(names=names))}
    )
    dataset = datasets.Dataset.from_dict(
        {"label": [ids for ids, _ in rows], "text": [text for _, text in rows]}, features=features
    )
    dataset.save_to_disk(tmp_path / "multi")
    data = module(
        tiny_model_dir, tmp_path, from_disk=str(tmp_path / "multi"), text_column="text", label_column="label",
        multi_label=True,
    )  # fmt: skip
    data.setup()
    assert data.labels.names == names
    train = data.frames["train"]
    row = train.index[train["text"] == "acting and music"][0]
    assert data.datasets["train"].labels[row].tolist() == [0.0, 1.0, 1.0]


def test_the_token_cache_is_keyed_by_the_fingerprint(
    tiny_model_dir: Path, tmp_path: Path, saved_dict: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module(tiny_model_dir, tmp_path, from_disk=str(saved_dict)).setup()
    assert len(list((tmp_path / "cache").iterdir())) == 3

    def refuse(*args, **kwargs):
        raise AssertionError("tokenized again")

    with monkeypatch.context() as patch:
        patch.setattr(tokenization, "encode", refuse)
        again = module(tiny_model_dir, tmp_path, from_disk=str(saved_dict))
        again.setup()  # from the cache, found by the fingerprint
    # the same texts under another fingerprint are another entry
    reloaded = datasets.load_from_disk(saved_dict)
    reloaded.map(lambda row: row, desc=None).save_to_disk(tmp_path / "copy")  # a transform: a new fingerprint
    module(tiny_model_dir, tmp_path, from_disk=str(tmp_path / "copy")).setup()
    assert len(list((tmp_path / "cache").iterdir())) == 6


def test_one_line_errors_name_the_column_split_and_setting(tiny_model_dir: Path, tmp_path: Path, saved_dict) -> None:
    with pytest.raises(DataError, match=r"split 'train'\): no column 'body' \(columns: review, sentiment\)"):
        module(tiny_model_dir, tmp_path, from_disk=str(saved_dict), text_column="body").setup()
    with pytest.raises(DataError, match=r"no split 'fit' .* \(the dataset has: train, validation, test\)"):
        module(tiny_model_dir, tmp_path, from_disk=str(saved_dict), splits={"train": "fit"}).setup()
    script = tmp_path / "scripted"
    script.mkdir()
    (script / "scripted.py").write_text("raise SystemExit('never run')\n")
    with pytest.raises(DataError, match="loading script .* data.trust_remote_code=true"):
        module(tiny_model_dir, tmp_path, path=str(script)).setup()
    with pytest.raises(DataError, match="hub cannot be reached .* network"):
        module(tiny_model_dir, tmp_path, path="someone/reviews").setup()
    with pytest.raises(DataError, match="no such file or folder"):
        module(tiny_model_dir, tmp_path, path=str(tmp_path / "absent")).setup()
    with pytest.raises(DataError, match="data.path .* or data.from_disk"):
        module(tiny_model_dir, tmp_path).setup()


def test_text_pairs_come_from_two_columns_of_a_dataset(tiny_model_dir: Path, tmp_path: Path) -> None:
    frame = toy_pairs(200)
    datasets.Dataset.from_pandas(frame).save_to_disk(tmp_path / "pairs")
    data = module(
        tiny_model_dir, tmp_path, from_disk=str(tmp_path / "pairs"), text_column="a", label_column="label",
        text_pair_column="b",
    )  # fmt: skip
    data.setup()
    train = data.frames["train"]
    assert len(train) == 160 and set(zip(train["text"], train["text_pair"])) <= set(zip(frame["a"], frame["b"]))
    ids, _, _, first = data.datasets["train"][0]
    expected = data.tokenizer(train["text"].iloc[0], train["text_pair"].iloc[0])["input_ids"]
    assert ids.tolist() == expected and 0 < first < len(ids)  # one sequence, the second text after `first` tokens
    with pytest.raises(DataError, match="text_pair_column|no column 'c'"):
        module(
            tiny_model_dir, tmp_path, from_disk=str(tmp_path / "pairs"), text_column="a", label_column="label",
            text_pair_column="c",
        ).setup()  # fmt: skip
