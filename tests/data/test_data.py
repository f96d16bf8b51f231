"""The data layer: packaged sources, splits, labels, tokenization cache, batching, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import toy_reviews

from textclf.data import packaged, sources
from textclf.data.batching import PAD_TO_MULTIPLE_OF, LengthBucketBatchSampler, PadCollator
from textclf.data.labels import sorted_labels
from textclf.data.tokenization import load_tokenizer, tokenize_cached
from textclf.errors import DataError
from textclf.training.datamodule import TextClassificationDataModule


@pytest.mark.parametrize(
    ("name", "sizes", "num_labels"),
    [
        ("rotten_tomatoes", {"train": 8530}, 2),
        ("sms_spam", {"train": 5574}, 2),
        ("trec6", {"train": 5452}, 6),
        ("newsgroups20", {"train": 11293, "test": 7528}, 20),
    ],
)
def test_packaged_sources_have_their_documented_sizes(name: str, sizes: dict[str, int], num_labels: int) -> None:
    splits = packaged.PACKAGED[name]()
    assert {split: len(frame) for split, frame in splits.items()} == sizes
    assert splits["train"]["label"].nunique() == num_labels
    assert not splits["train"]["text"].str.contains("\n(?:ham|spam)\t", regex=True).any()


def test_sms_spam_unglues_the_messages_stored_together() -> None:
    labels = packaged.sms_spam()["train"]["label"].value_counts().to_dict()
    assert labels == {"ham": 4827, "spam": 747}  # the SMS Spam Collection's published counts


def datamodule(tiny_model_dir: Path, tmp_path: Path, **kwargs) -> TextClassificationDataModule:
    kwargs.setdefault("cache_dir", str(tmp_path / "cache"))
    module = TextClassificationDataModule(tokenizer=str(tiny_model_dir), **kwargs)
    module.setup("fit")
    return module


def test_split_is_deterministic_disjoint_and_80_10_10(tiny_model_dir: Path, toy_csv: Path, tmp_path: Path) -> None:
    first = datamodule(tiny_model_dir, tmp_path, source="files", train_file=str(toy_csv))
    again = datamodule(tiny_model_dir, tmp_path, source="files", train_file=str(toy_csv), seed=7)
    sizes = {split: len(frame) for split, frame in first.frames.items()}
    assert sizes == {"train": 480, "val": 60, "test": 60}
    for split in ("train", "val", "test"):  # the training seed does not move examples between splits
        pd.testing.assert_frame_equal(first.frames[split], again.frames[split])
    rows = [set(zip(frame["text"], frame.index)) for frame in first.frames.values()]
    assert sum(len(r) for r in rows) == 600
    assert first.id2label == {0: "negative", 1: "positive"}


def test_labels_are_the_union_of_splits_in_a_stable_order() -> None:
    assert sorted_labels({"10", "2", "1"}) == ["1", "2", "10"]
    assert sorted_labels({"b", "a", "c"}) == ["a", "b", "c"]


def test_integer_labels_and_given_val_test_files(tiny_model_dir: Path, tmp_path: Path) -> None:
    frame = toy_reviews(300)
    frame["label"] = (frame["label"] == "positive").astype(int) * 10 + 2  # labels 2 and 12
    for split, start in zip(("train", "val", "test"), (0, 100, 200)):
        part = frame.iloc[start : start + 100]
        part.to_json(tmp_path / f"{split}.jsonl", orient="records", lines=True)
    module = datamodule(
        tiny_model_dir,
        tmp_path,
        source="files",
        train_file=str(tmp_path / "train.jsonl"),
        val_file=str(tmp_path / "val.jsonl"),
        test_file=str(tmp_path / "test.jsonl"),
    )
    assert module.id2label == {0: "2", 1: "12"}
    assert [len(module.datasets[s]) for s in ("train", "val", "test")] == [100, 100, 100]


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".parquet"])
def test_every_file_format_reads_the_same_rows(suffix: str, tmp_path: Path) -> None:
    frame = toy_reviews(50).rename(columns={"text": "review", "label": "stars"})
    path = tmp_path / f"data{suffix}"
    {
        ".csv": lambda: frame.to_csv(path, index=False),
        ".tsv": lambda: frame.to_csv(path, sep="\t", index=False),
        ".jsonl": lambda: frame.to_json(path, orient="records", lines=True),
        ".parquet": lambda: frame.to_parquet(path),
    }[suffix]()
    read = sources.read_table(path, "review", "stars")
    assert read["text"].tolist() == frame["review"].tolist()
    assert read["label"].tolist() == frame["stars"].tolist()


def test_batches_are_padded_to_their_own_longest_example(tiny_model_dir: Path, toy_csv: Path, tmp_path: Path) -> None:
    module = datamodule(tiny_model_dir, tmp_path, source="files", train_file=str(toy_csv), max_length=128, batch_size=8)
    for batch in list(module.train_dataloader())[:10]:
        longest = int(batch["attention_mask"].sum(1).max())
        multiple = PAD_TO_MULTIPLE_OF
        assert batch["input_ids"].shape[1] == -(-longest // multiple) * multiple < 128
    assert (batch["input_ids"][batch["attention_mask"] == 0] == module.tokenizer.pad_token_id).all()
    assert batch["input_ids"][0, 0] == module.tokenizer.cls_token_id


def test_bucket_sampler_covers_everything_once_reshuffles_and_cuts_padding() -> None:
    lengths = np.random.default_rng(0).integers(5, 120, size=1000)
    sampler = LengthBucketBatchSampler(lengths, batch_size=16, shuffle=True, seed=3, bucket_batches=10)
    first, second = list(sampler), list(sampler)
    assert sorted(i for batch in first for i in batch) == list(range(1000))
    assert first != second  # a new order every epoch
    padded = sum(len(b) * lengths[b].max() for b in first)
    rng = np.random.default_rng(1)
    random_batches = np.array_split(rng.permutation(1000), len(first))
    assert padded < 0.7 * sum(len(b) * lengths[b].max() for b in random_batches)
    sampler.set_epoch(0)
    assert list(sampler) == first  # reproducible from (seed, epoch)


def test_bucket_sampler_shards_disjointly_across_ranks() -> None:
    lengths = np.arange(100)
    shards = [list(LengthBucketBatchSampler(lengths, 8, shuffle=True, num_replicas=2, rank=r)) for r in (0, 1)]
    assert len(shards[0]) == len(shards[1])  # the same number of optimizer steps on every rank
    assert not {i for b in shards[0] for i in b} & {i for b in shards[1] for i in b}
    evaluation = [
        list(LengthBucketBatchSampler(lengths[:5], 128, shuffle=False, num_replicas=2, rank=r)) for r in (0, 1)
    ]
    assert sorted(i for shard in evaluation for b in shard for i in b) == list(range(5))  # all, once
    assert all(len(shard) == 1 for shard in evaluation)  # even one batch of 5 gives every rank work


def test_tokenization_runs_once_and_is_then_read_from_the_cache(tiny_model_dir: Path, tmp_path: Path) -> None:
    tokenizer = load_tokenizer(str(tiny_model_dir))
    texts = toy_reviews(100)["text"].tolist()
    ids, offsets, _ = tokenize_cached(texts, tokenizer, 32, tmp_path)
    assert len(list(tmp_path.iterdir())) == 1

    class Refusing:  # same fingerprint, but tokenizing again would fail
        backend_tokenizer, truncation_side = tokenizer.backend_tokenizer, tokenizer.truncation_side

        def __call__(self, *args, **kwargs):
            raise AssertionError("tokenized again")

    cached_ids, cached_offsets, _ = tokenize_cached(texts, Refusing(), 32, tmp_path)
    np.testing.assert_array_equal(ids, cached_ids)
    np.testing.assert_array_equal(offsets, cached_offsets)
    tokenize_cached(texts, tokenizer, 16, tmp_path)  # another max_length is another entry
    assert len(list(tmp_path.iterdir())) == 2


def test_collator_keeps_row_indices_for_reordering_and_pads_to_the_multiple() -> None:
    examples = [(np.array([5, 6, 7]), 1, 4, -1), (np.array([5]), 0, 9, -1)]
    batch = PadCollator(0, pad_to_multiple_of=1)(examples)
    assert batch["index"].tolist() == [4, 9]
    assert batch["input_ids"].tolist() == [[5, 6, 7], [5, 0, 0]]
    batch = PadCollator(0, pad_to_multiple_of=4)(examples)
    assert batch["input_ids"].tolist() == [[5, 6, 7, 0], [5, 0, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0], [1, 0, 0, 0]]
    assert "token_type_ids" not in batch
    pairs = [(np.array([5, 6, 7, 8]), 1, 0, 2), (np.array([5, 6]), 0, 1, 1)]  # first segments of 2 and 1
    assert PadCollator(0, pad_to_multiple_of=1)(pairs)["token_type_ids"].tolist() == [[0, 0, 1, 1], [0, 1, 0, 0]]


def write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


@pytest.mark.parametrize(
    ("content", "name", "expected"),
    [
        (None, "missing.csv", "missing.csv: file not found"),
        ("", "empty.csv", "empty.csv: file is empty"),
        ("text,label\n", "header.csv", "header.csv: no data rows"),
        ('text,label\n"unclosed,a\n', "quote.csv", "quote.csv: cannot be parsed: Error tokenizing data"),
        ("review,label\nhello,a\n", "nocol.csv", "nocol.csv: no column 'text' (columns: review, label)"),
        (b"text,label\ncaf\xe9,a\n", "latin1.csv", "latin1.csv: not UTF-8 text"),
        ("text,label\na,b\n", "data.xlsx", "data.xlsx: unknown file type '.xlsx'"),
    ],
)
def test_bad_files_give_one_line_errors_naming_the_file(tmp_path: Path, content, name: str, expected: str) -> None:
    path = tmp_path / name
    if content is not None:
        write(path, content)
    with pytest.raises(DataError) as error:
        sources.read_table(path, "text", "label")
    assert expected in str(error.value)
    assert "\n" not in str(error.value)


def test_single_class_and_unseen_labels_are_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    one = write(tmp_path / "one.csv", "text,label\n" + "good film,pos\n" * 20)
    with pytest.raises(DataError, match=r"one.csv \(train\): only one class \(pos\)"):
        datamodule(tiny_model_dir, tmp_path, source="files", train_file=str(one))
    train = write(tmp_path / "train.csv", "text,label\n" + "good film,pos\nbad film,neg\n" * 10)
    val = write(tmp_path / "val.csv", "text,label\ngood,pos\nodd,neutral\n")
    with pytest.raises(
        DataError, match=r"val.csv \(val\): row 2 has label 'neutral' that the training split never has"
    ):
        datamodule(tiny_model_dir, tmp_path, source="files", train_file=str(train), val_file=str(val))


def test_empty_texts_are_dropped_with_a_count_or_refused(tiny_model_dir: Path, tmp_path: Path, caplog) -> None:
    path = write(tmp_path / "gaps.csv", "text,label\n" + "good film,pos\nbad film,neg\n" * 10 + ",pos\n   ,neg\n")
    module = datamodule(tiny_model_dir, tmp_path, source="files", train_file=str(path))
    assert sum(len(frame) for frame in module.frames.values()) == 20
    assert f"{path} (train): dropped 2 of 22 rows with an empty text" in caplog.messages
    with pytest.raises(DataError, match=r"gaps.csv \(train\): row 21 has an empty text"):
        datamodule(tiny_model_dir, tmp_path, source="files", train_file=str(path), empty_texts="error")


def test_a_missing_label_column_is_named(tmp_path: Path) -> None:
    path = write(tmp_path / "nolabel.jsonl", '{"text": "fine", "stars": 5}\n')
    with pytest.raises(DataError, match=r"nolabel.jsonl: no column 'label' \(columns: text, stars\)"):
        sources.read_table(path, "text", "label")
