"""Peak RSS of reading, cleaning, splitting and tokenizing an N-row dataset: `data=hf` from a folder
written by `save_to_disk` against `data=files` from the same rows as a CSV (docs/performance.md's
1,000,000-row figure). The rows are rotten_tomatoes sentences repeated with a random word added (seeded,
so every run writes the same rows), label names in a ClassLabel.

    .venv/bin/python scripts/hf_data_memory.py --rows 1000000
    .venv/bin/python scripts/hf_data_memory.py --rows 20000 --tokenizer /path/to/tokenizer

Each way runs in its own process (so its peak RSS is its own), with an empty token cache. A benchmark,
not a test: run it alone on the machine.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

LABELS = ["negative", "positive"]


def write_rows(rows: int, directory: Path) -> tuple[Path, Path]:
    """The same rows as a CSV file and as a save_to_disk DatasetDict (one train split, as the CSV)."""
    import datasets

    from textclf.data.packaged import rotten_tomatoes

    base = rotten_tomatoes()["train"]
    rng = np.random.default_rng(0)
    picks = rng.integers(0, len(base), rows)
    words = np.array(base["text"].str.split().explode().unique().tolist(), dtype=object)
    extra = words[rng.integers(0, len(words), rows)]
    texts = base["text"].to_numpy(dtype=object)[picks] + " " + extra
    labels = base["label"].to_numpy(dtype=object)[picks]
    csv = directory / "rows.csv"
    import pandas as pd

    pd.DataFrame({"text": texts, "label": labels}).to_csv(csv, index=False)
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=LABELS)})
    dataset = datasets.Dataset.from_dict({"text": list(texts), "label": list(labels)}, features=features)
    saved = directory / "saved"
    datasets.DatasetDict({"train": dataset}).save_to_disk(saved)
    return csv, saved


def worker(way: str, location: str, tokenizer: str, cache: str) -> dict[str, float]:
    from textclf import TextClassificationDataModule

    settings = (
        {"source": "files", "train_file": location} if way == "files" else {"source": "hf", "from_disk": location}
    )
    start = time.perf_counter()
    module = TextClassificationDataModule(tokenizer=tokenizer, cache_dir=cache, max_length=64, **settings)
    module.setup()
    return {
        "rows": sum(len(split) for split in module.datasets.values()),
        "seconds": round(time.perf_counter() - start, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--tokenizer", default="all-MiniLM-L6-v2", help="model.net.pretrained's tokenizer")
    parser.add_argument("--worker", nargs=3, metavar=("WAY", "LOCATION", "CACHE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker[0], args.worker[1], args.tokenizer, args.worker[2])))
        return
    with tempfile.TemporaryDirectory() as directory:
        csv, saved = write_rows(args.rows, Path(directory))
        for way, location in (("files", csv), ("hf", saved)):
            cache = tempfile.mkdtemp(dir=directory)
            command = [sys.executable, __file__, "--tokenizer", args.tokenizer, "--worker", way, str(location), cache]
            result = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
            print(json.dumps({"way": f"data={way}", "input_rows": args.rows, **result}))


if __name__ == "__main__":
    main()
