"""The audit's findings on out-of-fold predictions made up to hold known problems: planted flips are found
as cleanlab finds them, conflicting duplicates and an outlier too, worst first."""

from __future__ import annotations

import numpy as np
import pandas as pd
from cleanlab.filter import find_label_issues

from textclf.curation.issues import COLUMNS, Predictions, find_issues

NAMES = ["ham", "spam", "other"]


def made_up_predictions(rows: int = 300, flips: int = 15, seed: int = 0) -> tuple[pd.DataFrame, set[int]]:
    """Confident, right predictions of a true class per row; `flips` rows' given labels changed."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 3, rows)
    probabilities = rng.dirichlet([0.3, 0.3, 0.3], rows) * 0.2
    probabilities[np.arange(rows), truth] += 0.8
    given = truth.copy()
    flipped = rng.choice(rows, flips, replace=False)
    given[flipped] = (truth[flipped] + rng.integers(1, 3, flips)) % 3
    centres = rng.normal(size=(3, 16)) * 3
    embeddings = centres[truth] + rng.normal(size=(rows, 16)) * 0.3
    frame = pd.DataFrame({"row": np.arange(rows) + 1000, "text": [f"text number {i}" for i in range(rows)]})
    frame["label"] = [NAMES[i] for i in given]
    for index, name in enumerate(NAMES):
        frame[f"prob_{name}"] = probabilities[:, index]
    frame["embedding"] = list(embeddings.astype(np.float32))
    return frame, {int(row) + 1000 for row in flipped}


def test_planted_flips_are_found_as_cleanlab_finds_them_worst_first() -> None:
    frame, flipped = made_up_predictions()
    issues = find_issues(Predictions.of(frame))
    assert list(issues.columns) == COLUMNS
    found = set(issues.loc[issues["issue"] == "label", "row"])
    assert found <= flipped and len(found) >= 0.8 * len(flipped)
    reference = find_label_issues(
        np.array([NAMES.index(name) for name in frame["label"]]), frame[[f"prob_{n}" for n in NAMES]].to_numpy()
    )
    assert found == set(frame["row"][reference])
    assert list(issues["label_quality"]) == sorted(issues["label_quality"])
    suggested = issues[issues["issue"] == "label"].set_index("row")["suggested_label"]
    assert all(suggested[row] != frame.set_index("row").loc[row, "label"] for row in found)


def test_conflicting_duplicates_and_an_outlier_are_found() -> None:
    frame, _ = made_up_predictions(flips=0)
    frame.loc[5, "text"] = "  TEXT number 4 "  # the same text as row 4, once case and spacing are ignored
    frame.loc[5, "label"] = next(name for name in NAMES if name != frame.loc[4, "label"])
    frame.at[11, "embedding"] = (frame.loc[10, "embedding"] * 1.001).astype(np.float32)  # a near neighbour...
    frame.loc[10, "text"] = "this text is number 10 of many"
    frame.loc[11, "text"] = "this text is number 10 of many !"  # ...with most of its words...
    frame.loc[11, "label"] = next(name for name in NAMES if name != frame.loc[10, "label"])  # ...labelled otherwise
    frame.at[20, "embedding"] = np.full(16, 50.0, dtype=np.float32) * np.sign(np.arange(16) % 2 - 0.5)
    issues = find_issues(Predictions.of(frame))
    duplicates = set(issues.loc[issues["issue"] == "duplicate", "row"])
    assert {1004, 1005, 1010, 1011} <= duplicates
    assert 1020 in set(issues.loc[issues["issue"] == "outlier", "row"])
    twin = issues[(issues["issue"] == "duplicate") & (issues["row"] == 1005)]["suggested_label"].item()
    assert twin == frame.loc[4, "label"]


def test_regression_flags_the_largest_residuals() -> None:
    rng = np.random.default_rng(1)
    truth = rng.normal(50, 10, 200)
    frame = pd.DataFrame({"row": range(200), "text": [f"t{i}" for i in range(200)], "label": truth})
    frame["score"] = truth + rng.normal(0, 1, 200)
    frame.loc[[3, 77], "label"] += 40
    issues = find_issues(Predictions.of(frame))
    assert set(issues.loc[issues["issue"] == "label", "row"]) == {3, 77}
    assert list(issues["row"][:2]) in ([3, 77], [77, 3])


def test_multi_label_issues_come_from_cleanlabs_multi_label_mode() -> None:
    rng = np.random.default_rng(2)
    truth = rng.random((200, 3)) < 0.4
    truth[~truth.any(1), 0] = True
    truth[7] = [True, False, False]  # so that its opposite has labels too
    probabilities = np.where(truth, 0.9, 0.05) + rng.random((200, 3)) * 0.04
    given = truth.copy()
    given[7] = ~truth[7]  # every label of row 7 wrong
    frame = pd.DataFrame({"row": range(200), "text": [f"t{i}" for i in range(200)]})
    frame["label"] = [[NAMES[i] for i in np.flatnonzero(row)] for row in given]
    for index, name in enumerate(NAMES):
        frame[f"prob_{name}"] = probabilities[:, index]
    issues = find_issues(Predictions.of(frame))
    assert 7 in set(issues.loc[issues["issue"] == "label", "row"])
    row = issues[(issues["row"] == 7) & (issues["issue"] == "label")].iloc[0]
    assert row["suggested_label"] == "|".join(np.array(NAMES)[truth[7]])
