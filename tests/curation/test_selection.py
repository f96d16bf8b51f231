"""`textclf-select`: it skips the texts the checkpoint was trained on, writes its choice in selection order
with the input's columns, gives the same choice whatever the chunk size (a pool larger than a chunk; the scores equal
up to fp32 noise), and refuses a bad k, an empty pool or a missing column with one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import TESTS, best_checkpoint, compose_cfg, toy_reviews

from textclf.curation.selection import select, spread_order, uncertainty
from textclf.errors import DataError, SettingError


def pool_file(trained_toy, tmp_path: Path) -> tuple[Path, set[str]]:
    """300 new reviews with 40 of the training texts among them, and an extra column."""
    training = pd.read_csv(trained_toy[0].data.train_file)
    known = training.sample(40, random_state=0)
    pool = pd.concat([toy_reviews(300, seed=9), known], ignore_index=True).sample(frac=1, random_state=1)
    pool = pool.rename(columns={"text": "body"}).assign(source_id=[f"id{i}" for i in range(len(pool))])
    path = tmp_path / "pool.csv"
    pool.drop(columns="label").to_csv(path, index=False)
    return path, set(known["text"])


def selected(trained_toy, tmp_path: Path, name: str, *overrides: str) -> pd.DataFrame:
    cfg = compose_cfg(
        tmp_path / "run",
        None,
        f"ckpt_path={best_checkpoint(trained_toy)}",
        "text_column=body",
        f"output={tmp_path / name}",
        "precision=32-true",
        *overrides,
        config="select",
    )
    select(cfg)
    return pd.read_csv(tmp_path / name)


def same_choice_up_to_float_noise(chunked: pd.DataFrame, whole: pd.DataFrame, atol: float = 1e-4) -> None:
    """Chunks batch the texts differently, so fp32 scores differ in their last digits: the scores rank by rank
    agree, and a text chosen by one and not the other sits at the cut, tied with it within that noise."""
    assert list(chunked["selection_score"]) == sorted(chunked["selection_score"], reverse=True)
    np.testing.assert_allclose(chunked["selection_score"], whole["selection_score"], atol=atol)
    scores = pd.concat([chunked, whole]).groupby("row")["selection_score"].first()
    cut = min(chunked["selection_score"].min(), whole["selection_score"].min())
    assert all(scores[row] <= cut + atol for row in set(chunked["row"]) ^ set(whole["row"]))
    for frame in (chunked, whole):  # each row keeps its score wherever it ranks
        np.testing.assert_allclose(frame.set_index("row")["selection_score"], scores[frame["row"]], atol=atol)


def test_selection_skips_known_texts_keeps_order_and_streams_chunks(trained_toy, tmp_path: Path) -> None:
    path, known = pool_file(trained_toy, tmp_path)
    pool = pd.read_csv(path)
    whole = selected(trained_toy, tmp_path, "whole.csv", f"input={path}", "k=25", "strategy=margin")
    chunked = selected(
        trained_toy, tmp_path, "chunked.csv", f"input={path}", "k=25", "strategy=margin", "chunk_size=32"
    )
    assert list(whole.columns) == ["body", "source_id", "row", "selection_score"]
    assert len(whole) == 25 and not set(whole["body"]) & known
    for frame in (whole, chunked):  # row: 0-based in the input
        assert list(frame["body"]) == list(pool["body"].iloc[frame["row"]])
        assert list(frame["source_id"]) == list(pool["source_id"].iloc[frame["row"]])
    assert list(whole["selection_score"]) == sorted(whole["selection_score"], reverse=True)
    same_choice_up_to_float_noise(chunked, whole)
    diverse = selected(trained_toy, tmp_path, "diverse.csv", f"input={path}", "k=25", "chunk_size=32")
    assert len(diverse) == 25 and diverse["body"].is_unique and not set(diverse["body"]) & known
    assert set(diverse["body"]) <= set(pool["body"])


def test_uncertainty_and_the_spread_order() -> None:
    probabilities = np.array([[0.9, 0.1], [0.55, 0.45], [0.7, 0.3]])
    for strategy in ("margin", "entropy", "least_confidence"):
        assert list(np.argsort(-uncertainty(probabilities, strategy, False))) == [1, 2, 0]
    embeddings = np.array([[1.0, 0.0], [1.0, 0.01], [0.0, 1.0], [-1.0, 0.0]])
    order = spread_order(np.array([1.0, 0.99, 0.5, 0.4]), embeddings, 3)
    assert list(order[:1]) == [0] and 1 not in order  # its near twin comes after texts elsewhere


@pytest.mark.slow
def test_bad_k_empty_pools_and_missing_columns_are_one_line(trained_toy, tmp_path: Path) -> None:
    path, _ = pool_file(trained_toy, tmp_path)
    with pytest.raises(SettingError, match=r"^k: 0 is out of range \(a whole number ≥ 1\)$"):
        selected(trained_toy, tmp_path, "x.csv", f"input={path}", "k=0")
    with pytest.raises(SettingError, match=r"^strategy: 'smart' is not a choice \(diverse, margin"):
        selected(trained_toy, tmp_path, "x.csv", f"input={path}", "strategy=smart")
    (tmp_path / "empty.csv").write_text("body,source_id\n")
    with pytest.raises(DataError, match=r"empty.csv: no texts to rank$"):
        selected(trained_toy, tmp_path, "x.csv", f"input={tmp_path / 'empty.csv'}")
    with pytest.raises(DataError, match=r"pool.csv: no column 'review' \(columns: body, source_id\)$"):
        selected(trained_toy, tmp_path, "x.csv", f"input={path}", "text_column=review")
    assert not (tmp_path / "x.csv").exists()
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "textclf",
            "select",
            f"ckpt_path={best_checkpoint(trained_toy)}",
            f"input={path}",
            "k=-3",
            f"output={tmp_path / 'x.csv'}",
            f"hydra.run.dir={tmp_path / 'cli'}",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == "textclf: error: k: -3 is out of range (a whole number ≥ 1)"
