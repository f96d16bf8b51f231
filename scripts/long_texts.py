"""Long documents: truncation against sliding windows, on the packaged long-text datasets.

    .venv/bin/python scripts/long_texts.py --datasets imdb newsgroups20 --epochs 1
    .venv/bin/python scripts/long_texts.py --train-examples 64 --epochs 1 --limit-eval-batches 2   # a smoke run

Each setting is one `textclf-train` subprocess (the packaged all-MiniLM-L6-v2, `data.max_length`, 128 by
default): `truncate` keeping the head, the tail, or the head and tail, and `window` (stride 32) with the
windows' logits aggregated by mean or by max. The script prints a Markdown table: test accuracy and F1
(per text), windows per test text, and the wall seconds of the whole process (data, training, testing).
Run directories go under `--out`. `--train-examples` must leave every newsgroups20 label in training (64
does not). `--limit-eval-batches` counts batches: with windows a batch holds whole texts (up to
`eval_batch_size` windows, longest texts first), so limited runs are not comparable across settings.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

SETTINGS = {
    "truncate/head": ["data.long_texts=truncate", "data.truncation=head"],
    "truncate/tail": ["data.long_texts=truncate", "data.truncation=tail"],
    "truncate/head_tail": ["data.long_texts=truncate", "data.truncation=head_tail"],
    "window/mean": ["data.long_texts=window", "data.window_aggregation=mean"],
    "window/max": ["data.long_texts=window", "data.window_aggregation=max"],
}


def train_command() -> str:
    """textclf-train beside this Python (the venv's), else on the PATH."""
    beside = Path(sys.executable).with_name("textclf-train")
    return str(beside) if beside.exists() else "textclf-train"


def run(dataset: str, setting: str, args: argparse.Namespace) -> dict[str, object]:
    run_dir = Path(args.out) / dataset / setting.replace("/", "-")
    command = [
        train_command(),
        f"data={dataset}",
        f"data.max_length={args.max_length}",
        f"data.window_stride={args.stride}",
        f"trainer.max_epochs={args.epochs}",
        f"hydra.run.dir={run_dir}",
        "logger=none",
        *SETTINGS[setting],
    ]
    if args.train_examples:
        command.append(f"data.max_train_examples={args.train_examples}")
    if args.limit_eval_batches:
        command += [f"trainer.limit_val_batches={args.limit_eval_batches}"]
        command += [f"trainer.limit_test_batches={args.limit_eval_batches}"]
    command += args.override
    start = time.perf_counter()
    completed = subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    )
    seconds = time.perf_counter() - start
    if completed.returncode:
        print(completed.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"{dataset} {setting} failed (exit {completed.returncode}): {' '.join(command)}")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {
        "dataset": dataset,
        "setting": setting,
        "test/acc": round(metrics["test/acc"], 4),
        "test/f1": round(metrics["test/f1"], 4),
        "windows per text": windows_per_text(run_dir / "train.log"),
        "wall s": round(seconds, 1),
    }


def windows_per_text(log: Path) -> float:
    """Test windows per test text, from the run log's data line (1 when texts are truncated)."""
    for line in log.read_text().splitlines():
        if "data: {" in line:
            data = json.loads(line[line.index("data: {") + len("data: ") :])
            texts = data.get("texts", data["splits"])
            return round(data["splits"]["test"] / texts["test"], 2)
    return float("nan")


def markdown(rows: list[dict[str, object]]) -> str:
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row[column]) for column in columns) + " |" for row in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["imdb", "newsgroups20"])
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--train-examples", type=int, default=None, help="data.max_train_examples (default: all)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--stride", type=int, default=32, help="data.window_stride of the window settings")
    parser.add_argument("--limit-eval-batches", type=int, default=None, help="validation and test batches (smoke runs)")
    parser.add_argument("--out", default="outputs/long_texts")
    parser.add_argument("--override", action="append", default=[], help="one more textclf-train override")
    args = parser.parse_args()
    rows = []
    for dataset in args.datasets:
        for setting in args.settings:
            rows.append(run(dataset, setting, args))
            print(f"{dataset} {setting}: {rows[-1]}", file=sys.stderr, flush=True)
    print(markdown(rows))


if __name__ == "__main__":
    main()
