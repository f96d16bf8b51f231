"""Long texts as sliding windows: cut, batched by whole texts, aggregated per text; a label word that head
truncation never sees is learned; one-line errors for every window setting; pair truncation `only_second`."""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import FILLER, NEGATIVE, POSITIVE, compose_cfg, evaluate_on_file, export_checkpoint, toy_training
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig

from textclf.data.tokenization import encode_pairs, load_tokenizer
from textclf.data.windows import TextBatchSampler, aggregate, check_windows, cut_windows
from textclf.errors import DataError, SettingError
from textclf.inference.prediction import predict
from textclf.inference.predictor import Predictor
from textclf.running import unwrap


def ragged(texts: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    lengths = [len(ids) for ids in texts]
    return np.concatenate([np.array(ids) for ids in texts]), np.concatenate([[0], np.cumsum(lengths)])


def test_windows_keep_the_special_tokens_overlap_by_the_stride_and_end_at_the_text_end() -> None:
    long = [101, *range(1, 19), 102]  # [CLS] 18 tokens [SEP]
    ids, offsets, text_index = cut_windows(*ragged([long, [101, 7, 102]]), 8, 2, 1, 1)
    windows = [ids[offsets[i] : offsets[i + 1]].tolist() for i in range(len(offsets) - 1)]
    # body 6 tokens, step 4: starts 0, 4, 8, 12; the last window ends at the text's last token
    assert windows[:4] == [[101, *range(1 + s, 7 + s), 102] for s in (0, 4, 8, 12)]
    assert windows[4] == [101, 7, 102] and text_index.tolist() == [0, 0, 0, 0, 1]
    ids, offsets, text_index = cut_windows(*ragged([long, [101, 7, 102]]), 8, 2, 1, 1, max_windows=2)
    assert text_index.tolist() == [0, 0, 1]
    # an uneven end: the last window moves back to end at the text's end (more overlap, never padding)
    ids, offsets, _ = cut_windows(*ragged([[101, *range(1, 12), 102]]), 8, 2, 1, 1)
    assert ids[offsets[-2] : offsets[-1]].tolist() == [101, *range(6, 12), 102]


def test_window_logits_aggregate_per_text_by_mean_or_max() -> None:
    logits = torch.tensor([[1.0, 0.0], [3.0, -2.0], [0.5, 0.5]])
    window_text = torch.tensor([0, 0, 1])
    assert aggregate(logits, window_text, 2, "mean").tolist() == [[2.0, -1.0], [0.5, 0.5]]
    assert aggregate(logits, window_text, 2, "max").tolist() == [[3.0, 0.0], [0.5, 0.5]]


def test_evaluation_batches_hold_whole_texts_and_ranks_share_no_text() -> None:
    text_index = np.repeat(np.arange(10), [1, 5, 2, 2, 1, 7, 1, 1, 3, 2])
    lengths = np.full(len(text_index), 16)
    seen = []
    for rank in range(2):
        batches = list(TextBatchSampler(text_index, lengths, batch_size=4, num_replicas=2, rank=rank))
        for batch in batches:
            texts = set(text_index[batch].tolist())
            # every window of each of its texts; more than 4 windows only for one text alone
            assert sorted(batch) == sorted(np.flatnonzero(np.isin(text_index, list(texts))).tolist())
            assert len(batch) <= 4 or len(texts) == 1
        seen.append({int(text_index[i]) for batch in batches for i in batch})
    assert not seen[0] & seen[1] and seen[0] | seen[1] == set(range(10))


def instantiation_error(cfg: DictConfig) -> Exception:
    with pytest.raises(InstantiationException) as raised:
        instantiate(cfg.data)
    return unwrap(raised.value)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data.long_texts=slide"], "data.long_texts: 'slide' is not a choice (truncate, window)"),
        (["data.long_texts=window", "data.window_stride=-1"], "data.window_stride: -1 is out of range"),
        (["data.long_texts=window", "data.window_stride=128"], "data.window_stride: 128 with data.max_length=64"),
        (["data.max_windows=0"], "data.max_windows: 0 is out of range (a whole number ≥ 1, or null: every window)"),
        (["data.window_aggregation=median"], "data.window_aggregation: 'median' is not a choice (mean, max)"),
        (["data=sentiment_pairs", "data.long_texts=window"], "data.long_texts: window is for single texts"),
        (["data=sentiment_pairs", "data.pair_truncation=only_first"], "data.pair_truncation: 'only_first' is not"),
    ],
)
def test_window_and_pair_truncation_settings_are_checked_with_one_line(make_cfg, overrides, message) -> None:
    with pytest.raises(SettingError) as raised:
        make_cfg(*overrides)
    assert str(raised.value).startswith(message) and "\n" not in str(raised.value)


def test_a_stride_that_leaves_no_room_for_the_special_tokens_is_refused(make_cfg, toy_csv) -> None:
    cfg = make_cfg(*toy_training(toy_csv), "data.long_texts=window", "data.max_length=16", "data.window_stride=14")
    datamodule = instantiate(cfg.data)  # 14 < 16: only the tokenizer knows its 2 special tokens
    with pytest.raises(DataError, match="minus the 2 special tokens of each window"):
        datamodule.setup("fit")
    check_windows("window", 13, None, "mean", 16, specials=2)


def hidden_label_reviews(count: int, seed: int = 0) -> pd.DataFrame:
    """Reviews of 40 to 50 filler words with the one sentiment word between words 15 and 25: beyond the
    head of 16 tokens, and not within the tail either."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        label = rng.choice(["positive", "negative"])
        words = rng.choices(FILLER, k=rng.randint(40, 50))
        words.insert(rng.randint(15, 25), rng.choice(POSITIVE if label == "positive" else NEGATIVE))
        rows.append({"text": " ".join(words), "label": label})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def hidden_label_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    csv = tmp_path_factory.mktemp("windows") / "long.csv"
    hidden_label_reviews(400).to_csv(csv, index=False)
    return csv


def train_long(tiny_model_dir: Path, csv: Path, root: Path, *overrides: str) -> tuple[dict, dict]:
    from textclf.training.fit import train

    cfg = compose_cfg(
        root / "run",
        tiny_model_dir,
        *toy_training(csv),
        "data.max_length=16",
        "data.window_stride=4",
        "callbacks.early_stopping=null",
        *overrides,
    )
    return train(cfg)


@pytest.fixture(scope="module")
def trained_windows(tiny_model_dir: Path, hidden_label_csv: Path, tmp_path_factory) -> tuple[dict, dict]:
    return train_long(tiny_model_dir, hidden_label_csv, tmp_path_factory.mktemp("win"), "data.long_texts=window")


@pytest.mark.slow  # two trainings
def test_windows_learn_a_label_word_that_head_truncation_never_sees(
    trained_windows, tiny_model_dir: Path, hidden_label_csv: Path, tmp_path: Path
) -> None:
    metrics, objects = trained_windows
    head, _ = train_long(tiny_model_dir, hidden_label_csv, tmp_path, "data.long_texts=truncate")
    assert metrics["test/acc"] >= 0.9 and head["test/acc"] <= 0.7
    datamodule = objects["datamodule"]
    test = datamodule.datasets["test"]
    assert len(np.unique(test.text_index)) == len(datamodule.frames["test"]) < len(test)  # windows per text


@pytest.mark.slow  # its fixture trains for over a minute on 2 CPU cores
def test_eval_and_predict_report_one_row_per_text_with_mean_or_max(
    trained_windows, hidden_label_csv: Path, tmp_path: Path
) -> None:
    metrics, objects = trained_windows
    checkpoint = objects["trainer"].checkpoint_callback.best_model_path
    reproduced = evaluate_on_file(checkpoint, hidden_label_csv, tmp_path / "eval")
    assert reproduced["test/acc"] == pytest.approx(metrics["test/acc"], abs=1e-6)
    assert reproduced["test/loss"] == pytest.approx(metrics["test/loss"], abs=1e-3)  # per text, as in training
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["examples"] == 40  # texts, not windows
    assert pd.read_csv(tmp_path / "eval" / "per_class.csv")["support"].sum() == 40
    texts = hidden_label_reviews(60, seed=3)
    predictor = Predictor.from_checkpoint(checkpoint, precision="32-true")
    assert predictor.long_texts == "window" and predictor.window_stride == 4
    mean = predictor.predict_proba(texts["text"].tolist())
    maximum = Predictor.from_checkpoint(checkpoint, precision="32-true", window_aggregation="max").predict_proba(
        texts["text"].tolist()
    )
    assert mean.shape == maximum.shape == (60, 2) and not np.allclose(mean, maximum)
    for probabilities in (mean, maximum):
        assert np.mean(np.array(predictor.labels_of(probabilities)) == texts["label"].to_numpy()) >= 0.85
    source, out = tmp_path / "texts.txt", tmp_path / "predictions.csv"
    source.write_text("\n".join(texts["text"]) + "\n")
    stats = predict(
        compose_cfg(
            tmp_path / "p",
            None,
            f"ckpt_path={checkpoint}",
            f"input={source}",
            f"output={out}",
            "window_aggregation=max",
            config="predict",
        )
    )
    written = pd.read_csv(out)
    assert stats["texts"] == len(written) == 60 and written["text"].tolist() == texts["text"].tolist()


@pytest.mark.slow  # its fixture trains for over a minute on 2 CPU cores
def test_the_export_of_a_window_model_says_it_reads_one_window(trained_windows, tmp_path: Path, caplog) -> None:
    _, objects = trained_windows
    with caplog.at_level(logging.WARNING, logger="textclf"):
        directory = export_checkpoint(objects["trainer"].checkpoint_callback.best_model_path, "hf", tmp_path)
    assert any("reads a text's first 16 tokens only" in record.getMessage() for record in caplog.records)
    card = (directory / "README.md").read_text()
    assert "overlapping windows of 16 tokens (4 tokens of overlap)" in card and "`textclf-predict`" in card


def test_the_cache_keeps_whole_texts_and_windows_follow_their_settings(make_cfg, hidden_label_csv: Path) -> None:
    def windows(*overrides: str) -> tuple[int, int]:
        cfg = make_cfg("data=files", f"data.train_file={hidden_label_csv}", "data.max_length=16", *overrides)
        datamodule = instantiate(cfg.data)
        datamodule.setup("fit")
        return len(datamodule.datasets["train"]), len(list(Path(cfg.data.cache_dir).iterdir()))

    truncated, entries = windows()
    stride_0, entries_windows = windows("data.long_texts=window", "data.window_stride=0")
    stride_8, entries_again = windows("data.long_texts=window", "data.window_stride=8")
    first_two, _ = windows("data.long_texts=window", "data.window_stride=8", "data.max_windows=2")
    assert truncated < stride_0 < stride_8 and first_two == 2 * truncated
    # one entry per split for the truncated texts, one for the whole texts that every window setting shares
    assert entries_windows == 2 * entries and entries_again == entries_windows


def test_only_second_shortens_the_second_text_and_refuses_a_first_text_too_long(tiny_model_dir: Path) -> None:
    tokenizer = load_tokenizer(str(tiny_model_dir))
    first, second = " ".join(["good"] * 6), " ".join(["bad"] * 3)
    ids, firsts = encode_pairs([first], [second], tokenizer, 10, pair_truncation="longest_first")
    assert len(ids[0]) == 10 and firsts[0] == 6  # [CLS], 4 of the 6 first words, [SEP]
    ids, firsts = encode_pairs([first], [second], tokenizer, 10, pair_truncation="only_second")
    assert len(ids[0]) == 10 and firsts[0] == 8  # the first text whole, 1 word of the second
    with pytest.raises(DataError, match="only_second: a first text leaves no room"):
        encode_pairs([" ".join(["good"] * 12)], [second], tokenizer, 10, pair_truncation="only_second")


@pytest.mark.slow  # three trainings in subprocesses
def test_a_killed_window_run_resumes_and_ends_as_if_it_never_stopped(tiny_model_dir: Path, tmp_path: Path) -> None:
    from resume_runs import assert_resumes_as_if_never_stopped

    csv = tmp_path / "long.csv"
    hidden_label_reviews(120).to_csv(csv, index=False)
    windows = ("data.long_texts=window", "data.max_length=16", "data.window_stride=4", "data.max_windows=3")
    finetune = "strategy=finetune"  # 48 texts a class: auto would train contrastively
    assert_resumes_as_if_never_stopped(tmp_path, tiny_model_dir, csv, *windows, finetune, kill_at=27, resumed_at=25)
