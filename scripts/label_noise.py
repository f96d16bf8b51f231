"""Label noise, measured: does `textclf-audit` find labels flipped on purpose, and does training without
the rows it flags (or with the labels it suggests) win back what the noise cost?

    .venv/bin/python scripts/label_noise.py                          # docs/data_quality.md's first table
    .venv/bin/python scripts/label_noise.py --datasets trec6 --noise 0.3 --test-size 1000 --seeds 1 2 3

For each packaged dataset (trec6, sms_spam by default): a fixed test set of `--test-size` rows and a
training file of `--train-size` rows are drawn (seed 0); `--noise` (10 %) of the training rows get another
class, drawn uniformly (seed 1). `textclf-audit` (5 folds, the packaged MiniLM) audits the noisy file; its
`label` issues are scored against the flipped rows (precision, recall), next to cleanlab's own
`find_label_issues` on the same out-of-fold probabilities. Then `textclf-train` on the clean file, on the
noisy file, on the noisy file with `data.exclude_rows=` the flagged rows ("cleaned") and with
`data.relabel_file=` their suggested labels ("relabelled"), once per training `--seeds`: the mean test
accuracy of each, and the share of what the noise cost that each way of cleaning recovered. Markdown table
on standard output; every run's accuracy in `results.json`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

DATASETS = ("trec6", "sms_spam")


def data_files(name: str, args: argparse.Namespace) -> tuple[Path, Path, Path, set[int]]:
    """clean.csv, noisy.csv (the same rows, `noise` of them relabelled) and test.csv; the flipped rows."""
    from textclf.data.packaged import PACKAGED

    frame = PACKAGED[name]()["train"][["text", "label"]].astype({"label": str})
    order = np.random.default_rng(0).permutation(len(frame))
    test = frame.iloc[order[: args.test_size]]
    train = frame.iloc[order[args.test_size : args.test_size + args.train_size]].reset_index(drop=True)
    rng = np.random.default_rng(1)
    flipped = rng.choice(len(train), round(args.noise * len(train)), replace=False)
    classes = sorted(train["label"].unique())
    noisy = train.copy()
    for row in flipped:
        noisy.loc[row, "label"] = rng.choice([c for c in classes if c != train.loc[row, "label"]])
    folder = args.out_dir / name
    folder.mkdir(parents=True, exist_ok=True)
    paths = folder / "clean.csv", folder / "noisy.csv", folder / "test.csv"
    for table, path in zip((train, noisy, test), paths):
        table.to_csv(path, index=False)
    return *paths, {int(row) for row in flipped}


def run(command: str, run_dir: Path, overrides: list[str], args: argparse.Namespace) -> dict:
    """One textclf command in its own process and run dir; its metrics.json (the audit: none)."""
    full = [
        str(Path(sys.executable).parent / f"textclf-{command}"),
        *overrides,
        f"trainer.max_epochs={args.epochs}",
        f"data.max_length={args.max_length}",
        f"data.batch_size={args.batch_size}",
        f"model.lr={args.lr}",
        "callbacks.progress_bar=null",
        "callbacks.model_summary=null",
        f"hydra.run.dir={run_dir}",
    ]
    print(f"$ {' '.join(full)}", file=sys.stderr, flush=True)
    if not (run_dir / "metrics.json").is_file():
        subprocess.run(full, check=True, stdout=sys.stderr)  # standard output is for the tables
    return json.loads((run_dir / "metrics.json").read_text())


def precision_recall(found: set[int], truth: set[int]) -> tuple[float, float]:
    hits = len(found & truth)
    return hits / max(len(found), 1), hits / max(len(truth), 1)


def measure(name: str, args: argparse.Namespace) -> dict[str, float]:
    from cleanlab.filter import find_label_issues

    clean, noisy, test, flipped = data_files(name, args)
    files = ["data=files", f"data.test_file={test}"]
    audit_dir = args.out_dir / name / "audit"
    run("audit", audit_dir, [*files, f"data.train_file={noisy}", "cv.folds=5"], args)
    issues = pd.read_csv(audit_dir / "label_issues.csv")
    flagged = set(issues.loc[issues["issue"] == "label", "row"])
    oof = pd.read_parquet(audit_dir / "oof_predictions.parquet")
    names = [column.removeprefix("prob_") for column in oof.columns if column.startswith("prob_")]
    probabilities = oof[[f"prob_{n}" for n in names]].to_numpy()
    given = np.array([names.index(label) for label in oof["label"]])
    reference = set(oof["row"][find_label_issues(given, probabilities)])
    truth = pd.read_csv(clean)["label"].astype(str).to_numpy()[oof["row"]]
    oof_accuracy = float((np.array(names)[probabilities.argmax(1)] == truth).mean())
    label_rows = issues[issues["issue"] == "label"]
    drop, relabel = args.out_dir / name / "flagged.csv", args.out_dir / name / "relabel.csv"
    label_rows[["row"]].to_csv(drop, index=False)
    label_rows[["row", "suggested_label"]].rename(columns={"suggested_label": "label"}).to_csv(relabel, index=False)
    arms = {
        "clean": [f"data.train_file={clean}"],
        "noisy": [f"data.train_file={noisy}"],
        "cleaned": [f"data.train_file={noisy}", f"data.exclude_rows={drop}"],
        "relabelled": [f"data.train_file={noisy}", f"data.relabel_file={relabel}"],
    }
    runs = {
        arm: [
            run("train", args.out_dir / name / f"{arm}_seed{seed}", [*files, *overrides, f"seed={seed}"], args)[
                "test/acc"
            ]
            for seed in args.seeds
        ]
        for arm, overrides in arms.items()
    }
    accuracy = {arm: float(np.mean(values)) for arm, values in runs.items()}
    precision, recall = precision_recall(flagged, flipped)
    reference_precision, reference_recall = precision_recall(reference, flipped)
    cost = accuracy["clean"] - accuracy["noisy"]

    def recovered(arm: str) -> float:
        return (accuracy[arm] - accuracy["noisy"]) / cost if cost > 0 else float("nan")

    return {
        "dataset": name,
        "rows": len(oof),
        "flipped": len(flipped),
        "flagged": len(flagged),
        "precision": precision,
        "recall": recall,
        "cleanlab precision": reference_precision,
        "cleanlab recall": reference_recall,
        "5-fold acc (true labels)": oof_accuracy,
        "test acc clean": accuracy["clean"],
        "test acc noisy": accuracy["noisy"],
        "test acc cleaned": accuracy["cleaned"],
        "test acc relabelled": accuracy["relabelled"],
        "recovered by cleaning": recovered("cleaned"),
        "recovered by relabelling": recovered("relabelled"),
        "runs": {arm: dict(zip(map(str, args.seeds), values)) for arm, values in runs.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--train-size", type=int, default=4000)
    parser.add_argument("--test-size", type=int, default=500)
    parser.add_argument("--noise", type=float, default=0.1)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42], help="one training run per seed and arm")
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1.5e-4)
    parser.add_argument("--out-dir", type=Path, default=Path("outputs/label_noise"))
    args = parser.parse_args()
    rows = [measure(name, args) for name in args.datasets]
    table = pd.DataFrame([{key: value for key, value in row.items() if key != "runs"} for row in rows])
    (args.out_dir / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(table.to_markdown(index=False, floatfmt=".3f"))


if __name__ == "__main__":
    main()
