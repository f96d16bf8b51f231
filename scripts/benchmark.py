"""Benchmark textclf against the Hugging Face Trainer on the same model, data, batch size, epochs and seed.

    .venv/bin/python scripts/benchmark.py                      # rotten_tomatoes, 2,000 examples, 1 epoch
    .venv/bin/python scripts/benchmark.py --examples 0 --epochs 3 --out outputs/benchmark/full.json
    .venv/bin/python scripts/benchmark.py --repeats 3   # every setting 3 times, in interleaved rounds
    .venv/bin/python scripts/benchmark.py --model-size base --examples 1000   # a bert-base-sized encoder

Each setting trains and predicts in a fresh subprocess (so peak RSS is its own) and reports train
samples/s, predict samples/s, peak RSS, test accuracy and the whole process's wall time; with --repeats,
the median of each figure over rounds that run every setting once (so a slow spell of the machine hits
all settings alike). The summary adds textclf/peer ratios (and each round's train ratio) and the share
of the bf16 compute roof (measured in the same run) that training uses. Needs `accelerate` for the
Trainer (`pip install accelerate`). `--device gpu` runs both on the GPU with their best settings there: textclf's
`trainer=gpu` preset, and the Trainer's fused AdamW and SDPA attention; the figures add the peak GPU memory.
A benchmark, not a test: the numbers vary with the machine's load.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch
from base_model import build_base_model
from machine import describe_machine, machine_line, synchronize
from whole_commands import COMMAND_SETTINGS, run_command_setting

SETTINGS = {
    "textclf": "textclf defaults (bf16, length buckets, fused AdamW, fast dropout, frozen embeddings)",
    "textclf_fp32": "textclf, precision 32-true",
    "hf_run_glue": "HF Trainer, run_glue defaults: every example padded to 128, fp32",
    "hf_dynamic_bf16": "HF Trainer, dynamic padding + bf16",
    **COMMAND_SETTINGS,
}
# --device to the torch device the predictions and the compute roof run on
TORCH_DEVICES = {"cpu": "cpu", "gpu": "cuda"}


# test-set figures from a model's outputs [examples, outputs] and the true targets
Metrics = Callable[[np.ndarray, np.ndarray], dict[str, float]]


def accuracy(outputs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    return {"test_acc": float((outputs.argmax(1) == labels).mean())}


@dataclass
class Split:
    texts: list[str]
    pairs: list[str] | None  # the second text of each pair, for data of text pairs
    labels: np.ndarray  # class indices, or float targets for regression


@dataclass
class Data:
    splits: dict[str, Split]  # train, val, test
    id2label: dict[int, str]
    regression: bool


def load_splits(args: argparse.Namespace) -> Data:
    """The same rows for every setting: textclf's data module, built from the config textclf trains with."""
    from hydra.utils import instantiate

    from textclf import compose_config

    cfg = compose_config("train", textclf_overrides(args, "auto"), args.scratch / "splits")
    module = instantiate(cfg.data)
    module.setup("fit")
    splits = {
        name: Split(
            frame["text"].tolist(),
            frame["text_pair"].tolist() if "text_pair" in frame else None,
            module.datasets[name].labels,
        )
        for name, frame in module.frames.items()
    }
    return Data(splits, module.id2label, module.hparams.task == "regression")


def textclf_overrides(args: argparse.Namespace, precision: str) -> list[str]:
    """The `textclf-train` overrides of a textclf setting: the benchmark's settings, no validation, no
    progress output, no logger, no test run."""
    return [
        f"data={args.dataset}",
        f"model.net.pretrained={args.model}",
        f"data.max_train_examples={args.examples or 'null'}",
        f"data.batch_size={args.batch_size}",
        f"data.max_length={args.max_length}",
        f"trainer.max_epochs={args.epochs}",
        f"model.lr={args.lr}",
        f"trainer.precision={precision}",
        f"seed={args.seed}",
        "trainer.limit_val_batches=0",
        "trainer.num_sanity_val_steps=0",
        "callbacks.early_stopping=null",
        "callbacks.progress_bar=null",
        "callbacks.model_summary=null",
        "+trainer.enable_progress_bar=false",
        "logger=none",
        "test=false",
        f"trainer={args.device}",  # the preset: gpu relaxes deterministic to warn
        f"paths.cache_dir={args.scratch / 'cache'}",
        *args.override,
    ]


def run_textclf(args: argparse.Namespace, precision: str, metrics: Metrics = accuracy) -> dict[str, float]:
    """Train with `textclf-train`'s code path, then predict the test split with `Predictor`."""
    from omegaconf import open_dict

    from textclf import Predictor, compose_config, train

    cfg = compose_config("train", textclf_overrides(args, precision), args.scratch / "textclf")

    with open_dict(cfg):  # imported by name: this file runs as __main__, a second copy of the class
        cfg.callbacks["timer"] = {"_target_": "benchmark.FitTimer"}
    _, objects = train(cfg)
    timer = next(c for c in objects["trainer"].callbacks if type(c).__name__ == "FitTimer")
    datamodule, model = objects["datamodule"], objects["model"]
    examples = len(datamodule.datasets["train"]) * args.epochs

    model.data_hparams = dict(datamodule.hparams)  # what a checkpoint carries: max_length, pair column, ...
    predictor = Predictor(model, precision=precision, device=TORCH_DEVICES[args.device])
    test = datamodule.frames["test"]
    pairs = test["text_pair"].tolist() if "text_pair" in test else None
    start = time.perf_counter()
    outputs = predictor.predict_proba(test["text"].tolist(), pairs=pairs)
    predict_seconds = time.perf_counter() - start
    return {
        "train_samples_per_s": examples / timer.seconds,
        "train_seconds": timer.seconds,
        "predict_samples_per_s": len(test) / predict_seconds,
    } | metrics(outputs, datamodule.datasets["test"].labels)


class FitTimer(L.Callback):
    """Wall time of the training loop alone: no setup, no validation, and not the `last.ckpt` written at each
    epoch's end (the Trainer script writes no checkpoint; the whole process's time includes it). A plain
    callback, so Lightning calls its epoch-end hook before the checkpoint callbacks'."""

    seconds = 0.0
    start: float | None = None

    def on_train_start(self, trainer, module) -> None:
        self.start = time.perf_counter()

    def on_train_epoch_start(self, trainer, module) -> None:
        self.start = self.start or time.perf_counter()

    def on_train_epoch_end(self, trainer, module) -> None:
        synchronize(module.device.type)
        self.seconds += time.perf_counter() - self.start
        self.start = None


def run_hf(args: argparse.Namespace, dynamic_bf16: bool, metrics: Metrics = accuracy) -> dict[str, float]:
    """A plain Trainer script on the same rows: pair encoding for pairs, `problem_type="regression"` (MSE on
    the raw targets) for regression."""
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    from textclf.pretrained import resolve_pretrained

    data = load_splits(args)
    train_split, test_split = data.splits["train"], data.splits["test"]
    location = resolve_pretrained(args.model)
    tokenizer = AutoTokenizer.from_pretrained(location)
    model = AutoModelForSequenceClassification.from_pretrained(
        location,
        num_labels=len(data.id2label),  # regression: one output
        id2label=data.id2label,
        problem_type="regression" if data.regression else None,  # None: inferred (single-label)
        **({"attn_implementation": "sdpa"} if args.device == "gpu" else {}),
    )
    padding = "do_not_pad" if dynamic_bf16 else "max_length"
    # the second text of a pair has token type 1
    inputs = ["input_ids", "attention_mask"] + (["token_type_ids"] if train_split.pairs else [])

    def dataset(split: Split) -> list[dict]:
        encoded = tokenizer(
            split.texts,
            split.pairs,
            truncation=True,  # pairs: longest_first, as textclf
            max_length=128 if not dynamic_bf16 else args.max_length,
            padding=padding,
        )
        return [
            {name: encoded[name][row] for name in inputs} | {"labels": label}
            for row, label in enumerate(split.labels.tolist())
        ]

    training_args = TrainingArguments(
        output_dir=str(args.scratch / "hf"),
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.batch_size if not dynamic_bf16 else 256,
        num_train_epochs=args.epochs,
        learning_rate=args.lr,
        warmup_steps=0.1,
        seed=args.seed,
        bf16=dynamic_bf16,
        eval_strategy="no",
        save_strategy="no",
        report_to=[],
        disable_tqdm=True,
        logging_strategy="no",
        use_cpu=args.device == "cpu",
        # on a GPU the fused AdamW, as textclf's (the CPU figures were measured with the Trainer's default)
        **({"optim": "adamw_torch_fused"} if args.device == "gpu" and dynamic_bf16 else {}),
    )
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=dataset(train_split),
        data_collator=DataCollatorWithPadding(tokenizer),
    )
    start = time.perf_counter()
    trainer.train()
    train_seconds = time.perf_counter() - start
    start = time.perf_counter()
    predictions = trainer.predict(dataset(test_split)).predictions
    predict_seconds = time.perf_counter() - start
    return {
        "train_samples_per_s": len(train_split.texts) * args.epochs / train_seconds,
        "train_seconds": train_seconds,
        "predict_samples_per_s": len(test_split.texts) / predict_seconds,
    } | metrics(predictions, test_split.labels)


def worker(args: argparse.Namespace) -> None:
    run_worker(
        args,
        {
            "textclf": lambda: run_textclf(args, "auto"),
            "textclf_fp32": lambda: run_textclf(args, "32-true"),
            "hf_run_glue": lambda: run_hf(args, dynamic_bf16=False),
            "hf_dynamic_bf16": lambda: run_hf(args, True),
        }[args.worker],
    )


def run_worker(args: argparse.Namespace, runner: Callable[[], dict[str, float]]) -> None:
    """The worker process's part: run one setting in a scratch dir, print its figures and peak RSS."""
    sys.path.insert(0, str(Path(__file__).parent))
    with tempfile.TemporaryDirectory(prefix="textclf-bench-") as scratch:  # checkpoints and caches go with it
        args.scratch = Path(scratch)
        result = runner()
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if torch.cuda.is_initialized():
        result["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    print("RESULT " + json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="rotten_tomatoes")
    parser.add_argument("--model", default="all-MiniLM-L6-v2", help="a local dir, a packaged or a hub model")
    parser.add_argument("--model-size", choices=["base"], help="base: a random bert-base-sized encoder instead")
    parser.add_argument("--examples", type=int, default=2000, help="training examples (0: all)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--device", default="cpu", choices=["cpu", "gpu"])
    parser.add_argument("--matmul-size", type=int, help="the compute roof's square products (default 2048, GPU 8192)")
    parser.add_argument(
        "--override",
        action="append",
        default=[],
        help="a textclf-train override for the textclf settings, e.g. model.net.bf16_residual=false (repeatable)",
    )
    parser.add_argument("--settings", default=",".join(SETTINGS), help="comma-separated, from: " + ", ".join(SETTINGS))
    parser.add_argument("--repeats", type=int, default=1, help="run every setting this many times; report medians")
    parser.add_argument("--out", default="outputs/benchmark/benchmark.json")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    if args.model_size == "base":  # built once, in a temp dir the workers read
        base_dir = tempfile.TemporaryDirectory(prefix="textclf-base-")
        args.model, args.model_size = str(build_base_model(Path(base_dir.name))), None
    device = TORCH_DEVICES[args.device]
    machine = describe_machine(device, args.matmul_size or (8192 if device == "cuda" else 2048))  # 8192 fills a GPU
    print(machine_line(machine), flush=True)
    runs, results = run_rounds({name: SETTINGS[name] for name in args.settings.split(",")}, args)
    summary = summarize(results, runs, machine, args)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(
        json.dumps(
            {"args": vars(args), "machine": machine, "results": results, "runs": runs, "summary": summary}, indent=2
        )
        + "\n"
    )
    print(machine_line(machine))
    print(markdown_table(results, summary))
    print(f"saved {args.out}")


def run_rounds(
    settings: dict[str, str], args: argparse.Namespace, script: str = __file__
) -> tuple[dict[str, list[dict[str, float]]], dict[str, dict[str, float]]]:
    """Every setting once per round, `args.repeats` rounds (a slow spell of the machine hits all settings
    alike): each run's figures, and the median of each figure per setting."""
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in settings}
    for round_ in range(1, args.repeats + 1):
        for name, description in settings.items():
            print(f"running {name} ({round_}/{args.repeats}): {description} ...", flush=True)
            runs[name].append(run_setting(name, args, script))
            print(f"  {json.dumps({k: round(v, 3) for k, v in runs[name][-1].items()})}", flush=True)
    results = {
        name: {key: statistics.median(run[key] for run in runs[name]) for key in runs[name][0]} for name in settings
    }
    return runs, results


def run_setting(name: str, args: argparse.Namespace, script: str = __file__) -> dict[str, float]:
    """One setting in a fresh process running `script --worker NAME` with the same options: its figures, or
    exit with the worker's error output. A whole-command setting runs its command itself, timed from start to exit."""
    if name in COMMAND_SETTINGS:
        with tempfile.TemporaryDirectory(prefix="textclf-bench-") as scratch:
            scratched = argparse.Namespace(**vars(args), scratch=Path(scratch))
            return run_command_setting(name, scratched, lambda: load_splits(scratched), Path(scratch))
    command = (
        [sys.executable, script, "--worker", name]
        + [
            f"--{key.replace('_', '-')}={value}"
            for key, value in vars(args).items()
            if value is not None and key not in ("worker", "settings", "out", "override", "repeats")
        ]
        + [f"--override={o}" for o in args.override]
    )
    start = time.perf_counter()
    completed = subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    )
    seconds = time.perf_counter() - start  # the whole process: imports, loading, data, training, prediction
    line = next((out for out in completed.stdout.splitlines() if out.startswith("RESULT ")), None)
    if completed.returncode or line is None:
        print(completed.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"setting {name} failed (exit {completed.returncode})")
    return json.loads(line[len("RESULT ") :]) | {"process_seconds": seconds}


def summarize(results: dict, runs: dict, machine: dict, args: argparse.Namespace) -> dict:
    """Ratios against the peers (with the spread of the rounds' train ratios), and the share of the bf16
    compute roof used by training."""
    from textclf.data.packaged import PACKAGED
    from textclf.data.tokenization import load_tokenizer

    summary = command_ratios(results, runs) if "textclf_command" in results else {}
    if "textclf" not in results:
        return summary
    ours = results["textclf"]
    for peer in ("hf_run_glue", "hf_dynamic_bf16"):
        if peer in results:
            summary[f"train_ratio_vs_{peer}"] = ours["train_samples_per_s"] / results[peer]["train_samples_per_s"]
            summary[f"process_ratio_vs_{peer}"] = results[peer]["process_seconds"] / ours["process_seconds"]
            summary[f"predict_ratio_vs_{peer}"] = ours["predict_samples_per_s"] / results[peer]["predict_samples_per_s"]
            summary[f"rss_ratio_vs_{peer}"] = ours["peak_rss_mb"] / results[peer]["peak_rss_mb"]
            if args.repeats > 1:
                rounds = [
                    a["train_samples_per_s"] / b["train_samples_per_s"] for a, b in zip(runs["textclf"], runs[peer])
                ]
                summary[f"train_ratio_vs_{peer}_min"], summary[f"train_ratio_vs_{peer}_max"] = min(rounds), max(rounds)
    # ~6 FLOPs per parameter per token (forward + backward) over the encoder's non-embedding parameters
    from transformers import AutoModel

    from textclf.pretrained import resolve_pretrained

    encoder = AutoModel.from_pretrained(resolve_pretrained(args.model))
    weights = sum(p.numel() for name, p in encoder.named_parameters() if not name.startswith("embeddings."))
    texts = PACKAGED[args.dataset]()["train"]["text"].tolist()[: args.examples or None]
    tokens = sum(
        len(ids) for ids in load_tokenizer(args.model)(texts, truncation=True, max_length=args.max_length)["input_ids"]
    )
    flops_per_example = 6 * weights * tokens / len(texts)
    roof = machine["bf16_gflops"] * 1e9 / flops_per_example
    summary["roof_train_samples_per_s"] = roof
    summary["roof_fraction_used"] = ours["train_samples_per_s"] / roof
    return summary


def command_ratios(results: dict, runs: dict) -> dict:
    """How many times less the user waits for `textclf-train` than for the Trainer script, and per round."""
    peer = "hf_trainer_command"
    if peer not in results:
        return {}
    rounds = [b["process_seconds"] / a["process_seconds"] for a, b in zip(runs["textclf_command"], runs[peer])]
    return {
        "command_ratio_vs_hf_trainer_command": results[peer]["process_seconds"]
        / results["textclf_command"]["process_seconds"],
        "command_ratio_min": min(rounds),
        "command_ratio_max": max(rounds),
    }


def markdown_table(results: dict, summary: dict) -> str:
    lines = [
        "| setting | train samples/s | predict samples/s | peak RSS MB | test acc | whole process s |",
        "|---|---|---|---|---|---|",
    ]
    for name, result in results.items():
        train, predict = result.get("train_samples_per_s"), result.get("predict_samples_per_s")
        lines.append(
            f"| {SETTINGS[name]} | {f'{train:.1f}' if train else '—'} | {f'{predict:.0f}' if predict else '—'} | "
            f"{result['peak_rss_mb']:.0f} | {result['test_acc']:.3f} | {result['process_seconds']:.1f} |"
        )
    lines += [""] + [f"- {key}: {value:.3f}" for key, value in summary.items()]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
