"""The same Optuna search with and without a pruner, one after the other: wall time, trials pruned, the
best `val/acc_best`, and the test accuracy of the best trial. Run it alone on the machine.

    .venv/bin/python scripts/sweep_pruning.py --trials 16 --epochs 3 --train-examples 1000
    .venv/bin/python scripts/sweep_pruning.py --pruner hyperband --pruner-settings "{min_resource: 1}"

Each sweep is a `textclf-sweep` process on `experiment=rotten_tomatoes` (the packaged MiniLM) with the
default search space, the same seed and the same overrides; only `sweep.pruner` differs. It prints a
Markdown table and the ratio of wall times.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd


def run_sweep(directory: Path, pruner: str, pruner_settings: str, args: argparse.Namespace) -> dict[str, object]:
    command = [
        str(Path(sys.executable).parent / "textclf-sweep"),
        "experiment=rotten_tomatoes",
        f"data.max_train_examples={args.train_examples}",
        f"trainer.max_epochs={args.epochs}",
        f"trainer.val_check_interval={args.val_check_interval}",
        f"sweep.n_trials={args.trials}",
        f"sweep.pruner={pruner}",
        f"hydra.run.dir={directory}",
        f"paths.cache_dir={args.cache_dir}",
        "callbacks.progress_bar=null",
        "+trainer.enable_progress_bar=false",
        *([f"sweep.pruner_settings={pruner_settings}"] if pruner != "none" and pruner_settings else []),
    ]
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    summary = pd.read_csv(directory / "summary.csv")
    best = summary[summary["status"] == "complete"].iloc[0]
    test = json.loads((Path(best["run_dir"]) / "metrics.json").read_text())["test/acc"]
    return {
        "pruner": pruner,
        "wall seconds": round(seconds, 1),
        "trials": len(summary),
        "complete": int((summary["status"] == "complete").sum()),
        "pruned": int((summary["status"] == "pruned").sum()),
        "failed": int((summary["status"] == "failed").sum()),
        "best val/acc_best": round(float(best["val/acc_best"]), 4),
        "best trial": int(best["trial"]),
        "its test/acc": round(float(test), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--train-examples", type=int, default=1000)
    parser.add_argument("--val-check-interval", type=float, default=0.5, help="validations per epoch: 1/this")
    parser.add_argument("--pruner", default="hyperband")
    parser.add_argument("--pruner-settings", default="{min_resource: 1, reduction_factor: 3}")
    parser.add_argument("--cache-dir", default=".cache/textclf")
    parser.add_argument("--output", type=Path, default=None, help="keep the sweep dirs here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = args.output or Path(scratch)
        rows = [run_sweep(root / pruner, pruner, args.pruner_settings, args) for pruner in ("none", args.pruner)]
    table = pd.DataFrame(rows)
    print(table.to_markdown(index=False))
    print(f"\nwall time without / with {args.pruner}: {rows[0]['wall seconds'] / rows[1]['wall seconds']:.2f}x")


if __name__ == "__main__":
    main()
