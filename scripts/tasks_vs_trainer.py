"""Benchmark textclf against a Hugging Face Trainer script on text pairs or regression: the same model, rows,
batch size, epochs, learning rate and seed, side by side in one run.

    .venv/bin/python scripts/tasks_vs_trainer.py --task pairs                   # sentiment_pairs, 2,000 pairs
    .venv/bin/python scripts/tasks_vs_trainer.py --task regression --epochs 2   # vader_movies, every row
    .venv/bin/python scripts/tasks_vs_trainer.py --task pairs --repeats 3       # medians of 3 rounds

The settings, workers and timing are scripts/benchmark.py's: each side trains in a fresh process on the
rows of textclf's data module, without validation, and is tested with its final weights. Reported: training
samples/s and the textclf/Trainer ratio; test accuracy and macro-F1 (pairs), or Pearson, Spearman and MAE
with a baseline that predicts the training targets' mean (regression). For pairs the textclf model is
also exported (`textclf-export format=hf`) and `pipeline("text-classification")` on `--check-rows` pairs is
compared with `textclf-predict` on the same pairs: at fp32, and at textclf-predict's default precision.
Needs `accelerate` for the Trainer. A benchmark, not a test: the speeds vary with the machine's load.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch
from benchmark import load_splits, run_hf, run_rounds, run_textclf, run_worker

TASKS: dict[str, dict[str, dict[str, Any]]] = {
    "pairs": {
        "defaults": {"dataset": "sentiment_pairs", "max_length": 128, "examples": 2000},
        "figures": {"test_acc": "test accuracy", "test_macro_f1": "test macro-F1"},
        "settings": {
            "textclf": "textclf defaults (bf16, length buckets, fused AdamW, fast dropout, frozen embeddings)",
            "hf_trainer": "HF Trainer: tokenizer pair encoding, dynamic padding, bf16",
        },
    },
    "regression": {
        "defaults": {"dataset": "vader_movies", "max_length": 64, "examples": 0},
        "figures": {"test_pearson": "test Pearson", "test_spearman": "test Spearman", "test_mae": "test MAE"},
        "settings": {
            "textclf": "textclf defaults (as for pairs); MSE on standardized targets",
            "hf_trainer": 'HF Trainer: problem_type="regression" (MSE on the raw targets), dynamic padding, bf16',
        },
    },
}
BASELINE = "the training targets' mean for every text (a constant: no correlation)"


def classification_metrics(outputs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Accuracy and macro-F1 with torchmetrics, as textclf's own test metrics."""
    from torchmetrics.functional.classification import multiclass_accuracy, multiclass_f1_score

    predicted, target, classes = torch.from_numpy(outputs.argmax(1)), torch.from_numpy(labels), outputs.shape[1]
    return {
        "test_acc": float(multiclass_accuracy(predicted, target, classes, average="micro")),
        "test_macro_f1": float(multiclass_f1_score(predicted, target, classes, average="macro")),
    }


def regression_metrics(outputs: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """Pearson, Spearman and MAE with torchmetrics, as textclf's own test metrics."""
    from torchmetrics.functional import mean_absolute_error, pearson_corrcoef, spearman_corrcoef

    scores, target = torch.from_numpy(outputs[:, 0]).float(), torch.from_numpy(targets).float()
    return {
        "test_pearson": float(pearson_corrcoef(scores, target)),
        "test_spearman": float(spearman_corrcoef(scores, target)),
        "test_mae": float(mean_absolute_error(scores, target)),
    }


def worker(args: argparse.Namespace) -> None:
    metrics = regression_metrics if args.task == "regression" else classification_metrics

    def textclf() -> dict[str, float]:
        result = run_textclf(args, "auto", metrics)
        if args.keep:  # the final weights, for the pipeline check (last.ckpt: written at the end of training)
            shutil.move(args.scratch / "textclf" / "checkpoints" / "last.ckpt", args.keep)
        return result

    run_worker(args, {"textclf": textclf, "hf_trainer": lambda: run_hf(args, True, metrics)}[args.worker])


def mean_baseline(args: argparse.Namespace) -> dict[str, float]:
    """The MAE of predicting the training targets' mean for every test text."""
    data = load_splits(args)
    mean = data.splits["train"].labels.astype(np.float64).mean()
    return {"test_mae": float(np.abs(data.splits["test"].labels - mean).mean())}


def run_cli(command: str, *overrides: str, run_dir: Path) -> None:
    """A textclf command of this environment, its Hydra run dir in `run_dir`; exit with its error output."""
    completed = subprocess.run(
        [str(Path(sys.executable).parent / command), *overrides, f"hydra.run.dir={run_dir}"],
        capture_output=True,
        text=True,
    )
    if completed.returncode:
        print(completed.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"{command} failed (exit {completed.returncode})")


def check_pipeline(args: argparse.Namespace, checkpoint: str) -> dict[str, Any]:
    """`pipeline("text-classification")` on the checkpoint's Hugging Face export against `textclf-predict`
    on the same pairs: the test pairs, then validation and training pairs (the test split of
    sentiment_pairs has 426) up to `--check-rows`. Both run on the same device, the pipeline in fp32."""
    import pandas as pd
    from transformers import pipeline

    data = load_splits(args)
    rows = [
        (name, text, pair)
        for name in ("test", "val", "train")
        for text, pair in zip(data.splits[name].texts, data.splits[name].pairs)
    ][: args.check_rows]
    splits, texts, pairs = (list(column) for column in zip(*rows))
    work, device = args.scratch / "check", "cuda" if args.device == "gpu" else "cpu"
    work.mkdir()
    pd.DataFrame({"text": texts, "text_pair": pairs}).to_csv(work / "pairs.csv", index=False)
    run_cli("textclf-export", f"ckpt_path={checkpoint}", "format=hf", f"output_dir={work / 'hf'}", run_dir=work)

    classify = pipeline("text-classification", model=str(work / "hf"), device=device)
    # truncation as textclf's (longest_first at the exported max_length): the pipeline does none unless asked
    answers = classify([{"text": a, "text_pair": b} for a, b in zip(texts, pairs)], top_k=None, truncation=True)
    names = list(data.id2label.values())
    hf = np.array([[{a["label"]: a["score"] for a in answer}[name] for name in names] for answer in answers])
    hf_labels = np.array(names)[hf.argmax(1)]
    over = sum(len(ids) > args.max_length for ids in classify.tokenizer(texts, pairs)["input_ids"])
    check: dict[str, Any] = {"pairs": len(texts), "pairs_over_max_length": over, "from_splits": Counter(splits)}
    for precision in ("32-true", "auto"):  # auto: textclf-predict's default (bf16 weights where fast)
        output = work / f"predictions-{precision}.csv"
        run_cli(
            "textclf-predict",
            f"ckpt_path={checkpoint}",
            f"input={work / 'pairs.csv'}",
            f"output={output}",
            f"precision={precision}",
            f"device={device}",
            run_dir=work,
        )
        ours = pd.read_csv(output, keep_default_na=False)  # probabilities rounded to 6 decimals
        check[f"textclf_predict_{precision}"] = {
            "same_labels": int((ours["label"].astype(str).to_numpy() == hf_labels).sum()),
            "max_abs_prob_diff": float(np.abs(ours[[f"prob_{name}" for name in names]].to_numpy() - hf).max()),
        }
    return check


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", required=True, choices=list(TASKS))
    parser.add_argument("--dataset", help="a textclf data config (default: sentiment_pairs / vader_movies)")
    parser.add_argument("--model", default="all-MiniLM-L6-v2", help="a local dir, a packaged or a hub model")
    parser.add_argument("--examples", type=int, help="training examples (0: all; default: 2,000 pairs / all)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--max-length", type=int, help="default: the data config's (128 pairs / 64 regression)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--device", default="cpu", choices=["cpu", "gpu"])
    parser.add_argument(
        "--override", action="append", default=[], help="a textclf-train override, also for the rows (repeatable)"
    )
    parser.add_argument("--repeats", type=int, default=1, help="run every setting this many times; report medians")
    parser.add_argument("--check-rows", type=int, default=1000, help="pairs: pairs compared with the pipeline")
    parser.add_argument("--out", help="default: outputs/benchmark/<task>_vs_trainer.json")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--keep", help=argparse.SUPPRESS)  # where the textclf worker leaves its checkpoint
    args = parser.parse_args()
    for key, value in TASKS[args.task]["defaults"].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.worker:
        return worker(args)

    task = TASKS[args.task]
    out = Path(args.out or f"outputs/benchmark/{args.task}_vs_trainer.json")
    with tempfile.TemporaryDirectory(prefix="textclf-tasks-") as scratch:
        if args.task == "pairs":
            args.keep = str(Path(scratch) / "textclf.ckpt")
        runs, results = run_rounds(task["settings"], args, __file__)
        args.scratch = Path(scratch)  # for load_splits here; set after the workers, as it is none of their options
        summary = summarize(runs, results)
        if args.task == "pairs":
            print("comparing pipeline() on the Hugging Face export with textclf-predict ...", flush=True)
            summary["pipeline_check"] = check_pipeline(args, args.keep)
        else:
            results["mean_baseline"] = mean_baseline(args)
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {"args": vars(args), "results": results, "runs": runs, "summary": summary}
    out.write_text(json.dumps(record, indent=2, default=str) + "\n")
    print(markdown_table(results, task["settings"] | {"mean_baseline": BASELINE}, task["figures"], summary))
    print(f"saved {out}")


def summarize(runs: dict[str, list[dict[str, float]]], results: dict[str, dict[str, float]]) -> dict[str, Any]:
    """The textclf/Trainer training speed ratio of the medians, and of each round."""
    rounds = [a["train_samples_per_s"] / b["train_samples_per_s"] for a, b in zip(runs["textclf"], runs["hf_trainer"])]
    ratio = results["textclf"]["train_samples_per_s"] / results["hf_trainer"]["train_samples_per_s"]
    return {"train_ratio_vs_hf_trainer": ratio, "train_ratio_rounds": rounds}


def markdown_table(
    results: dict[str, dict[str, float]], descriptions: dict[str, str], figures: dict[str, str], summary: dict
) -> str:
    columns = {"train_samples_per_s": "train samples/s"} | figures | {"process_seconds": "whole process s"}
    lines = ["| setting | " + " | ".join(columns.values()) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, result in results.items():
        cells = [f"{result[key]:.3f}" if key in result else "—" for key in columns]
        lines.append(f"| {descriptions[name]} | " + " | ".join(cells) + " |")
    lines += [""] + [f"- {key}: {json.dumps(value, default=str)}" for key, value in summary.items()]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
