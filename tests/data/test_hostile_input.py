"""Hostile input, property-based: arbitrary unicode, control characters, null bytes, quotes and newlines
inside texts, byte-order marks, huge texts, many classes. Nothing crashes, no row is lost without a
logged count, and predictions stay aligned with their inputs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import toy_reviews
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from textclf.data import sources
from textclf.errors import DataError
from textclf.inference.predictor import Predictor
from textclf.inference.reading import read_texts
from textclf.inference.writing import write_predictions
from textclf.training.datamodule import TextClassificationDataModule

# any unicode scalar value but lone surrogates (UTF-8 cannot hold them), control characters and NUL included
ANY_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=60)
LABELS = st.one_of(st.sampled_from(["pos", "neg", "n/a", "a,b", 'q"uote', "ünï", "1", "0"]), st.integers(-3, 3))
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def write_table(frame: pd.DataFrame, path: Path) -> None:
    """As common tools write them; CSV and TSV through Python's csv module, which quotes a field holding a
    carriage return (pandas' writer does not, and its own reader then sees a line break)."""
    if path.suffix in (".csv", ".tsv"):
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, delimiter="," if path.suffix == ".csv" else "\t")
            writer.writerow(frame.columns)
            writer.writerows(frame.itertuples(index=False))
    elif path.suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True, force_ascii=False)
    else:
        frame.to_parquet(path)


@SETTINGS
@given(
    texts=st.lists(ANY_TEXT, min_size=1, max_size=25), suffix=st.sampled_from([".csv", ".tsv", ".jsonl", ".parquet"])
)
def test_every_row_of_any_text_reads_back_exactly(tmp_path: Path, texts: list[str], suffix: str) -> None:
    path = tmp_path / f"data{suffix}"
    write_table(pd.DataFrame({"text": texts, "label": ["pos"] * len(texts)}), path)
    frame = sources.read_table(path, "text", "label")
    assert frame["text"].tolist() == texts


@pytest.mark.parametrize("suffix", [".csv", ".tsv"])
def test_a_byte_order_mark_is_not_part_of_the_first_column_name(tmp_path: Path, suffix: str) -> None:
    separator = "," if suffix == ".csv" else "\t"
    path = tmp_path / f"bom{suffix}"
    path.write_bytes(f"\ufefftext{separator}label\nfine{separator}pos\n".encode())
    assert sources.read_table(path, "text", "label")["text"].tolist() == ["fine"]


@SETTINGS
@given(rows=st.lists(st.tuples(ANY_TEXT, LABELS), min_size=12, max_size=40))
def test_the_data_module_keeps_every_nonempty_row_and_counts_the_rest(
    tiny_model_dir: Path, tmp_path: Path, rows: list[tuple[str, object]], caplog
) -> None:
    caplog.clear()  # one fixture for every example hypothesis draws
    rows += [("good film", "pos"), ("bad film", "neg")]  # at least two classes
    path = tmp_path / "hostile.jsonl"
    path.write_text(
        "".join(json.dumps({"text": text, "label": label}, ensure_ascii=False) + "\n" for text, label in rows),
        encoding="utf-8",
    )
    module = TextClassificationDataModule(
        source="files",
        train_file=str(path),
        tokenizer=str(tiny_model_dir),
        cache_dir=str(tmp_path / "cache"),
        val_fraction=0.2,
        test_fraction=0.2,
    )
    module.setup("fit")
    kept = sum(len(split) for split in module.datasets.values())
    empty = sum(1 for text, _ in rows if not text.strip())
    assert kept == len(rows) - empty
    if empty:
        assert f"{path} (train): dropped {empty} of {len(rows)} rows with an empty text" in caplog.messages
    # every label, whatever its type in the file, is one class named by its text
    assert set(module.id2label.values()) == {str(label) for text, label in rows if text.strip()}
    kept_texts = sorted(text for frame in module.frames.values() for text in frame["text"])
    assert kept_texts == sorted(text for text, _ in rows if text.strip())


@pytest.fixture(scope="module")
def predictor(trained_toy) -> Predictor:
    return Predictor.from_checkpoint(
        trained_toy[2]["trainer"].checkpoint_callback.best_model_path, precision="32-true", batch_size=8
    )


@SETTINGS
@given(texts=st.lists(ANY_TEXT, min_size=1, max_size=30))
def test_predictions_stay_aligned_with_any_input(predictor: Predictor, tmp_path: Path, texts: list[str]) -> None:
    together = predictor.predict_proba(texts)
    alone = np.concatenate([predictor.predict_proba([text]) for text in texts])
    assert together.shape == (len(texts), 2)
    assert np.allclose(together, alone, atol=1e-5)
    output = tmp_path / "out.jsonl"
    write_predictions(str(output), texts, predictor.labels_of(together), together, predictor.id2label)
    lines = output.read_text(encoding="utf-8").split("\n")[:-1]  # not splitlines: texts may hold \x85, \u2028
    assert [json.loads(line)["text"] for line in lines] == texts


@SETTINGS
@given(lines=st.lists(ANY_TEXT.filter(lambda text: "\n" not in text and "\r" not in text), min_size=1, max_size=30))
def test_plain_text_input_gives_one_text_per_line(tmp_path: Path, lines: list[str]) -> None:
    path = tmp_path / "texts.txt"
    path.write_bytes(("\n".join(lines) + "\n").encode("utf-8"))
    assert read_texts(str(path), "text") == lines


def test_a_megabyte_text_is_truncated_not_fatal(predictor: Predictor) -> None:
    huge = " ".join(toy_reviews(60_000)["text"])[:1_000_000]
    probabilities = predictor.predict_proba(["great", huge, "awful"])
    assert probabilities.shape == (3, 2) and np.isfinite(probabilities).all()
    assert predictor.labels_of(probabilities)[0] == "positive" and predictor.labels_of(probabilities)[2] == "negative"


@pytest.mark.slow
def test_a_thousand_classes_train_and_predict(make_cfg, tmp_path: Path) -> None:
    from textclf.training.fit import train

    rng = np.random.default_rng(0)
    words = toy_reviews(3000)["text"].tolist()
    path = tmp_path / "many.csv"
    pd.DataFrame({"text": words, "label": [f"class_{i % 1000:04d}" for i in range(3000)]}).sample(
        frac=1, random_state=int(rng.integers(100))
    ).to_csv(path, index=False)
    cfg = make_cfg(
        "data=files",
        f"data.train_file={path}",
        "data.val_fraction=0.0003",
        "data.test_fraction=0.0003",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=3",
        "trainer.precision=32-true",
        "strategy=finetune",  # 3 rows a class: auto would train contrastively (the native head is checked here)
    )
    metrics, objects = train(cfg)
    assert objects["model"].net.model.classifier.out_features == 1000
    assert 0.0 <= metrics["test/acc"] <= 1.0
    predictor = Predictor(objects["model"], precision="32-true")
    assert predictor.predict_proba(["good film"]).shape == (1, 1000)


def test_a_row_without_a_label_is_named_not_made_a_class(tiny_model_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "gap.csv"
    path.write_text("text,label\n" + "good film,pos\nbad film,neg\n" * 5 + "fine,\n", encoding="utf-8")
    module = TextClassificationDataModule(
        source="files", train_file=str(path), tokenizer=str(tiny_model_dir), cache_dir=None
    )
    with pytest.raises(DataError, match=r"^.*gap.csv \(train\): row 11 has no label$"):
        module.setup("fit")
