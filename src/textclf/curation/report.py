"""What an audit writes beside `label_issues.csv`: `label_issues.md` and `.html` (the counts per class, the
given labels against the suggested ones, the worst examples) and `label_noise.png` (per class, the share of
its rows with a likely wrong label)."""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import pandas as pd

from textclf.atomic import write_atomically
from textclf.curation.issues import Predictions
from textclf.plots import noise_figure

PICTURE = "label_noise.png"
SHOWN_CHARACTERS = 200


def per_class(predictions: Predictions, issues: pd.DataFrame) -> pd.DataFrame:
    """Each given class: its rows, how many have a label issue, their share, the label suggested most often."""
    given = pd.Series(predictions.label_text())
    doubted = issues[issues["issue"] == "label"]
    rows = []
    for index, name in enumerate(predictions.names):
        if predictions.multi_label:
            has = np.array([index in labels for labels in predictions.labels])
            flagged = doubted["label"].map(lambda text, name=name: name in text.split("|"))
        else:
            has, flagged = (given == name).to_numpy(), doubted["label"] == name
        suggested = doubted.loc[flagged, "suggested_label"].mode()
        rows.append(
            {
                "class": name,
                "rows": int(has.sum()),
                "label issues": int(flagged.sum()),
                "share": round(int(flagged.sum()) / max(int(has.sum()), 1), 4),
                "suggested most often": suggested.iloc[0] if len(suggested) else "",
            }
        )
    return pd.DataFrame(rows)


def given_against_suggested(issues: pd.DataFrame) -> pd.DataFrame:
    """Counts of the label issues by given label (rows) and suggested label (columns)."""
    doubted = issues[issues["issue"] == "label"]
    return pd.crosstab(doubted["label"], doubted["suggested_label"]).rename_axis(index="given", columns="suggested")


def shown(issues: pd.DataFrame, top: int) -> pd.DataFrame:
    """The worst `top` issues, long texts cut."""
    head = issues.head(top).copy()
    head["text"] = [text if len(text) <= SHOWN_CHARACTERS else text[:SHOWN_CHARACTERS] + "…" for text in head["text"]]
    return head


def summary_line(predictions: Predictions, issues: pd.DataFrame) -> str:
    counts = issues["issue"].value_counts()
    found = ", ".join(f"{int(counts.get(kind, 0))} {kind}" for kind in ("label", "duplicate", "outlier"))
    return f"{len(predictions.frame)} rows audited from out-of-fold predictions: {found} issues"


def markdown(predictions: Predictions, issues: pd.DataFrame, top: int) -> str:
    parts = ["# Label issues", "", summary_line(predictions, issues) + ".", ""]
    if not predictions.regression:
        parts += ["## Per class", "", per_class(predictions, issues).to_markdown(index=False), ""]
        parts += [f"![share of each class flagged]({PICTURE})", ""]
        if not predictions.multi_label and (issues["issue"] == "label").any():
            parts += ["## Given against suggested labels", "", given_against_suggested(issues).to_markdown(), ""]
    parts += [f"## The {min(top, len(issues))} worst", "", shown(issues, top).to_markdown(index=False), ""]
    return "\n".join(parts)


def html_page(predictions: Predictions, issues: pd.DataFrame, top: int) -> str:
    parts = ["<!doctype html><meta charset='utf-8'><title>label issues</title>", "<h1>Label issues</h1>"]
    parts.append(f"<p>{html.escape(summary_line(predictions, issues))}.</p>")
    if not predictions.regression:
        parts += ["<h2>Per class</h2>", per_class(predictions, issues).to_html(index=False)]
        parts.append(f"<p><img src='{PICTURE}' alt='share of each class flagged'></p>")
        if not predictions.multi_label and (issues["issue"] == "label").any():
            parts += ["<h2>Given against suggested labels</h2>", given_against_suggested(issues).to_html()]
    parts += [f"<h2>The {min(top, len(issues))} worst</h2>", shown(issues, top).to_html(index=False)]
    return "\n".join(parts) + "\n"


def write_report(output_dir: Path, predictions: Predictions, issues: pd.DataFrame, top: int) -> None:
    """label_issues.csv, .md, .html and (classification) label_noise.png in `output_dir`, each atomically."""
    write_atomically(output_dir / "label_issues.csv", lambda path: issues.to_csv(path, index=False))
    write_atomically(output_dir / "label_issues.md", lambda path: path.write_text(markdown(predictions, issues, top)))
    write_atomically(
        output_dir / "label_issues.html", lambda path: path.write_text(html_page(predictions, issues, top))
    )
    if predictions.regression:
        return
    table = per_class(predictions, issues)
    figure = noise_figure(list(table["class"]), table["share"].to_numpy(), table["label issues"].to_numpy())
    write_atomically(output_dir / PICTURE, lambda path: figure.savefig(path, dpi=120, format="png"))
