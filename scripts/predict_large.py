"""textclf-predict on a large plain-text file: texts/s, peak RSS, and the output checked row by row
against the input order (acceptance figure: peak RSS independent of the input's size).

    .venv/bin/python scripts/predict_large.py --lines 10000 5000000            # a tiny random model
    .venv/bin/python scripts/predict_large.py --lines 10000 --model all-MiniLM-L6-v2

The lines are rotten_tomatoes sentences in a seeded random order with their line number appended, so
every output row can be matched to its input line. `--model tiny` (default) trains nothing: it saves a
randomly initialised 2-layer, 128-wide BERT with the packaged MiniLM's tokenizer as a checkpoint, since
MiniLM predicts ~1,000 texts/s on 2 CPU cores (~90 min for 5,000,000 lines); any other value is
`model.net.pretrained` for the same random-head checkpoint. textclf-predict runs as a subprocess; its peak
RSS is `resource.getrusage(RUSAGE_CHILDREN)`, so each size runs in a fresh process of this script. A
benchmark, not a test: run it alone on the machine.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def write_lines(path: Path, lines: int) -> None:
    from textclf.data.packaged import rotten_tomatoes

    texts = rotten_tomatoes()["train"]["text"].str.replace("\n", " ").to_numpy(dtype=object)
    rng = np.random.default_rng(0)
    with path.open("w", encoding="utf-8") as handle:
        for start in range(0, lines, 100_000):
            picks = rng.integers(0, len(texts), min(100_000, lines - start))
            handle.writelines(f"{texts[pick]} #{start + i}\n" for i, pick in enumerate(picks))


def make_checkpoint(model: str, directory: Path) -> Path:
    """A textclf checkpoint with two labels and a random head (and a random encoder for `tiny`)."""
    import torch

    from textclf import ClassifierLitModule, build_network
    from textclf.data.tokenization import load_tokenizer
    from textclf.pretrained import resolve_pretrained

    tokenizer = load_tokenizer("all-MiniLM-L6-v2" if model == "tiny" else model)
    if model == "tiny":
        from transformers import BertConfig, BertModel

        encoder = directory / "tiny-encoder"
        config = BertConfig.from_pretrained(resolve_pretrained("all-MiniLM-L6-v2"))
        config.update({"hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 256})
        torch.manual_seed(0)
        BertModel(config).save_pretrained(encoder)
        model = str(encoder)
    net = build_network(2, pretrained=model)
    module = ClassifierLitModule(net, {0: "negative", 1: "positive"}, tokenizer=tokenizer)
    path = directory / "model.ckpt"
    checkpoint = {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}
    checkpoint["datamodule_hyper_parameters"] = {"max_length": 64, "truncation": "head"}
    module.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, path)
    return path


def check_order(source: Path, output: Path) -> int:
    """Every output row holds the text of the input line at the same position."""
    rows = 0
    with source.open(encoding="utf-8") as lines, output.open(encoding="utf-8", newline="") as handle:
        for rows, (line, row) in enumerate(zip(lines, csv.DictReader(handle)), start=1):
            if row["text"] != line.rstrip("\n"):
                raise SystemExit(f"row {rows}: '{row['text'][:60]}' is not input line '{line[:60]}'")
    return rows


def run(lines: int, model: str, chunk_size: int, directory: Path) -> dict[str, float]:
    source, output = directory / f"lines-{lines}.txt", directory / f"predictions-{lines}.csv"
    write_lines(source, lines)
    checkpoint = make_checkpoint(model, directory)
    command = [
        str(Path(sys.executable).with_name("textclf-predict")),
        f"ckpt_path={checkpoint}",
        f"input={source}",
        f"output={output}",
        f"chunk_size={chunk_size}",
        f"hydra.run.dir={directory / 'run'}",
    ]
    start = time.perf_counter()
    finished = subprocess.run(command, check=True, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    # textclf-predict's own figure: reading, predicting and writing, without its start-up
    reported = re.search(r"\(([\d.]+) texts/s\)", finished.stderr)
    checked = check_order(source, output)
    if checked != lines:
        raise SystemExit(f"{checked} output rows for {lines} input lines")
    return {
        "lines": lines,
        "model": model,
        "texts_per_second": float(reported.group(1)) if reported else None,
        "seconds_with_start_up": round(seconds, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
        "order_checked_rows": checked,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, nargs="+", default=[10_000, 5_000_000])
    parser.add_argument("--model", default="tiny", help="tiny (a random 2-layer BERT) or model.net.pretrained")
    parser.add_argument("--chunk-size", type=int, default=10_000)
    parser.add_argument("--single", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.single is not None:
        with tempfile.TemporaryDirectory() as directory:
            print(json.dumps(run(args.single, args.model, args.chunk_size, Path(directory))))
        return
    for lines in args.lines:  # a fresh process per size: RUSAGE_CHILDREN keeps the largest child's peak
        command = [sys.executable, __file__, "--single", str(lines), "--model", args.model]
        command += ["--chunk-size", str(args.chunk_size)]
        print(subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip(), flush=True)


if __name__ == "__main__":
    main()
