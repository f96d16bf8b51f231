"""The benchmark's whole-command settings: what a user waits for. `textclf-train` as `make train` runs it (a
validation each epoch, the test, checkpoints, TensorBoard) against `scripts/trainer_script.py` doing the same
work (an evaluation each epoch, then predicting the test split) on the same rows, each a fresh process timed
from start to exit."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

COMMAND_SETTINGS = {
    "textclf_command": "the textclf-train command: validation each epoch, test, checkpoints, TensorBoard",
    "hf_trainer_command": "a Trainer script: dynamic padding, bf16 where fast, evaluation each epoch, the test",
}


def train_command(args: argparse.Namespace, run_dir: Path) -> list[str]:
    """`textclf-train` with the benchmark's settings and nothing else changed."""
    return [
        str(Path(sys.executable).parent / "textclf-train"),
        f"data={args.dataset}",
        f"model.net.pretrained={args.model}",
        f"data.max_train_examples={args.examples or 'null'}",
        f"data.batch_size={args.batch_size}",
        f"data.max_length={args.max_length}",
        f"trainer.max_epochs={args.epochs}",
        f"model.lr={args.lr}",
        f"seed={args.seed}",
        f"trainer.accelerator={args.device}",
        f"hydra.run.dir={run_dir}",
        f"paths.cache_dir={run_dir.parent / 'cache'}",
        *args.override,
    ]


def trainer_command(args: argparse.Namespace, data_dir: Path, out_dir: Path) -> list[str]:
    """The Trainer script with the benchmark's settings, in bf16 where textclf's `precision=auto` picks it (a
    user would not train in bf16 on a CPU that emulates it)."""
    from textclf.precision import resolve_precision
    from textclf.pretrained import resolve_pretrained

    return [
        sys.executable,
        str(Path(__file__).parent / "trainer_script.py"),
        f"--data={data_dir}",
        f"--model={resolve_pretrained(args.model)}",
        f"--out={out_dir}",
        f"--epochs={args.epochs}",
        f"--batch-size={args.batch_size}",
        f"--lr={args.lr}",
        f"--max-length={args.max_length}",
        f"--seed={args.seed}",
        f"--device={args.device}",
        "--bf16" if resolve_precision("auto") == "bf16-mixed" else "--no-bf16",
    ]


def write_splits(data, directory: Path) -> Path:
    """The rows textclf trains, validates and tests on, as the CSV files the Trainer script reads."""
    import pandas as pd

    directory.mkdir(parents=True, exist_ok=True)
    for name, split in data.splits.items():
        labels = [data.id2label[int(label)] for label in split.labels]
        pd.DataFrame({"text": split.texts, "label": labels}).to_csv(directory / f"{name}.csv", index=False)
    return directory


def timed_process(command: list[str]) -> tuple[subprocess.CompletedProcess, float, float]:
    """Run a command to its end: its output, wall seconds and its own peak RSS in MB (wait4's rusage)."""
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=err, text=True, env=env)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        completed = subprocess.CompletedProcess(command, process.returncode, out.read(), err.read())
    return completed, seconds, usage.ru_maxrss / 1024


def run_command_setting(name: str, args: argparse.Namespace, load_data: Callable, scratch: Path) -> dict[str, float]:
    """One whole-command setting in `scratch`: its wall time, peak RSS and test accuracy."""
    if name == "textclf_command":
        run_dir = scratch / "textclf" / "run"
        completed, seconds, rss = timed_process(train_command(args, run_dir))
    else:
        data_dir = write_splits(load_data(), scratch / "csv")
        completed, seconds, rss = timed_process(trainer_command(args, data_dir, scratch / "hf"))
    if completed.returncode:
        print(completed.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"setting {name} failed (exit {completed.returncode})")
    if name == "textclf_command":
        accuracy = json.loads((run_dir / "metrics.json").read_text())["test/acc"]
    else:
        line = next(out for out in completed.stdout.splitlines() if out.startswith("RESULT "))
        accuracy = json.loads(line[len("RESULT ") :])["test_acc"]
    return {"process_seconds": seconds, "peak_rss_mb": rss, "test_acc": accuracy}
