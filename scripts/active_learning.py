"""Choosing what to label, measured: a simulated labelling loop for every `textclf-select` strategy.

    .venv/bin/python scripts/active_learning.py                        # docs/data_quality.md's trec6 table
    .venv/bin/python scripts/active_learning.py --dataset rotten_tomatoes \
        --out-dir outputs/active_learning_rotten_tomatoes --figure docs/figures/active_learning_rotten_tomatoes.png

From a packaged dataset (trec6 by default) a test set of `--test-size` rows and a pool of `--pool-size`
rows are drawn (seed 0); the pool's labels are hidden from the model (a column `textclf-select` carries
along). Each strategy starts from the same `--start` examples per class, then each round: train the packaged
MiniLM on the labelled rows (`textclf-train`, in-process, the last weights tested), note the test accuracy,
let `textclf-select` choose `--k` more pool texts with that checkpoint (the labelled ones are skipped as the
checkpoint's own data), and "label" them from the hidden column. Training uses `--train-strategy` (auto, the
default: the contrastive strategy while there are at most 64 labelled examples per class, docs/fewshot.md;
`--epochs` is fine-tuning's). Prints the accuracy after each round and
the labels each strategy needed to reach random's final accuracy (interpolated between rounds), and draws
the curves (`--figure`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

STRATEGIES = ("random", "margin", "entropy", "least_confidence", "diverse")


def pool_and_test(args: argparse.Namespace) -> tuple[pd.DataFrame, Path]:
    from textclf.data.packaged import PACKAGED

    frame = PACKAGED[args.dataset]()["train"][["text", "label"]].astype({"label": str})
    order = np.random.default_rng(0).permutation(len(frame))
    args.out_dir.mkdir(parents=True, exist_ok=True)
    test = args.out_dir / "test.csv"
    frame.iloc[order[: args.test_size]].to_csv(test, index=False)
    pool = frame.iloc[order[args.test_size : args.test_size + args.pool_size]].reset_index(drop=True)
    return pool.drop_duplicates("text").reset_index(drop=True), test


def train_round(labelled: Path, test: Path, run_dir: Path, args: argparse.Namespace) -> tuple[float, Path]:
    """Fit on the labelled rows; the test accuracy of the last weights and their checkpoint (the contrastive
    strategy's classifier, or fine-tuning's last.ckpt)."""
    from textclf.config import compose_config
    from textclf.training.fit import train

    overrides = [
        "data=files",
        f"data.train_file={labelled}",
        f"data.val_file={test}",
        f"data.test_file={test}",
        f"data.max_length={args.max_length}",
        "data.batch_size=16",
        f"trainer.max_epochs={args.epochs}",
        f"strategy={args.train_strategy}",
        "trainer.limit_val_batches=0",
        "callbacks.model_checkpoint=null",
        "callbacks.early_stopping=null",
        "callbacks.progress_bar=null",
        "callbacks.model_summary=null",
        "+trainer.enable_progress_bar=false",
        "+trainer.enable_model_summary=false",
        "logger=none",
        f"seed={args.seed}",
    ]
    with contextlib.redirect_stdout(sys.stderr):  # Lightning's test table: standard output is for the results
        metrics, _ = train(compose_config("train", overrides, run_dir))
    best = json.loads((run_dir / "metrics.json").read_text())["best_model_path"]
    return float(metrics["test/acc"]), Path(best) if best else run_dir / "checkpoints" / "last.ckpt"


def chosen(checkpoint: Path, pool: Path, strategy: str, output: Path, args: argparse.Namespace) -> pd.DataFrame:
    from textclf.config import compose_config
    from textclf.curation.selection import select

    overrides = [f"ckpt_path={checkpoint}", f"input={pool}", f"k={args.k}", f"strategy={strategy}", f"output={output}"]
    select(compose_config("select", [*overrides, f"seed={args.seed}"], output.parent))
    return pd.read_csv(output)


def simulate(strategy: str, pool: pd.DataFrame, test: Path, args: argparse.Namespace) -> list[tuple[int, float]]:
    """(labels, test accuracy) after each round of one strategy."""
    folder = args.out_dir / strategy
    folder.mkdir(parents=True, exist_ok=True)
    pool_path = folder / "pool.csv"
    pool.to_csv(pool_path, index=False)
    labelled = pool.sample(frac=1, random_state=0).groupby("label").head(args.start)
    curve = []
    for round_ in range(args.rounds + 1):
        labelled_path = folder / "labelled.csv"
        labelled[["text", "label"]].to_csv(labelled_path, index=False)
        accuracy, checkpoint = train_round(labelled_path, test, folder / f"round_{round_}", args)
        curve.append((len(labelled), accuracy))
        print(
            f"{strategy} round {round_}: {len(labelled)} labels, test acc {accuracy:.4f}", file=sys.stderr, flush=True
        )
        if round_ < args.rounds:
            picked = chosen(checkpoint, pool_path, strategy, folder / f"round_{round_}" / "next.csv", args)
            labelled = pd.concat([labelled, picked[["text", "label"]]], ignore_index=True)
    return curve


def labels_to_reach(curve: list[tuple[int, float]], target: float) -> float:
    """The labels at which a curve first reaches `target`, linearly interpolated; inf if it never does."""
    for (labels_before, before), (labels, accuracy) in zip([(0, 0.0), *curve], curve):
        if accuracy >= target:
            if labels_before == 0 or accuracy == before:
                return float(labels)
            return labels_before + (target - before) / (accuracy - before) * (labels - labels_before)
    return float("inf")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="trec6")
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES))
    parser.add_argument("--pool-size", type=int, default=3000)
    parser.add_argument("--test-size", type=int, default=500)
    parser.add_argument("--start", type=int, default=5, help="labelled examples per class to start from")
    parser.add_argument("--k", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=10, help="trainer.max_epochs of fine-tuning")
    parser.add_argument("--train-strategy", default="auto", choices=("auto", "contrastive", "finetune"))
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out-dir", type=Path, default=Path("outputs/active_learning"))
    parser.add_argument("--figure", type=Path, default=Path("docs/figures/active_learning.png"))
    args = parser.parse_args()
    pool, test = pool_and_test(args)
    curves = {strategy: simulate(strategy, pool, test, args) for strategy in args.strategies}
    (args.out_dir / "curves.json").write_text(json.dumps(curves, indent=2) + "\n")
    rounds = pd.DataFrame({name: [accuracy for _, accuracy in curve] for name, curve in curves.items()})
    rounds.insert(0, "labels", [labels for labels, _ in next(iter(curves.values()))])
    print(rounds.to_markdown(index=False, floatfmt=".3f"))
    if "random" in curves:
        target, budget = curves["random"][-1][1], curves["random"][-1][0]
        needed = {name: labels_to_reach(curve, target) for name, curve in curves.items()}
        table = pd.DataFrame(
            {"strategy": list(needed), "labels to reach random's final": list(needed.values())}
        ).assign(fewer=lambda t: 1 - t["labels to reach random's final"] / budget)
        print(f"\nrandom's final accuracy: {target:.4f} with {budget} labels\n")
        print(table.to_markdown(index=False, floatfmt=".3f"))
    from textclf.plots import curves_figure

    figure = curves_figure(
        {name: ([x for x, _ in curve], [y for _, y in curve]) for name, curve in curves.items()},
        "labelled examples",
        "test accuracy",
        f"{args.dataset}: labelling rounds of {args.k}",
    )
    args.figure.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.figure, dpi=120)


if __name__ == "__main__":
    main()
