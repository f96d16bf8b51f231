"""The contrastive strategy at scale: peak memory and time per training example as the training set grows,
against the pairs the `setfit` package lists before it trains.

    .venv/bin/python scripts/fewshot_scale.py                       # textclf at 10,000 and 100,000 rows
    .venv/bin/python scripts/fewshot_scale.py --setfit-rows 1000 2000 4000

textclf: `textclf-train strategy=contrastive` on R training rows (sms_spam's texts drawn with replacement, their
labels kept), `strategy.num_iterations` passes (default 1: 2R pairs), no validation, no test, with a tiny random
BERT 32 wide (the packaged MiniLM's tokenizer) so that the encoder's own cost, linear in the pairs anyway, does
not hide the rest: tokenizing, drawing pairs, batching, phase 2's embedding pass and logistic regression. Each run
is its own process: wall time (start to exit) and peak RSS (`os.wait4`).

setfit 1.2 builds its `ContrastiveDataset` from every pair of training rows (`shuffle_combinations`:
`np.triu_indices(n)` and a dict per pair kept) whatever `num_iterations` is; its construction alone is timed and
its peak RSS measured at `--setfit-rows`, in its own process, before any training. A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))

from gpu_tasks import tiny_bert  # noqa: E402
from machine import describe_machine, machine_line  # noqa: E402

from textclf.data.packaged import sms_spam  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def timed_process(command: list[str], cwd: Path) -> tuple[float, float, int, str]:
    """(seconds, peak RSS in MB, exit status, the end of its output) of a child process."""
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as output:
        child = subprocess.Popen(command, cwd=cwd, stdout=output, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)
        output.seek(0)
        tail = output.read()[-2000:]
    return time.perf_counter() - started, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status), tail


def training_rows(count: int, seed: int = 0) -> pd.DataFrame:
    """`count` sms_spam rows drawn with replacement."""
    frame = pd.concat(sms_spam().values(), ignore_index=True)[["text", "label"]]
    return frame.sample(count, replace=True, random_state=seed).reset_index(drop=True)


def textclf_run(rows: int, model: Path, work: Path, iterations: int) -> dict:
    train_csv = work / f"train-{rows}.csv"
    training_rows(rows).to_csv(train_csv, index=False)
    command = [sys.executable, "-m", "textclf", "train", "strategy=contrastive", "data=files"]
    command += [f"data.train_file={train_csv}", "data.val_fraction=0", "data.test_fraction=0.01", "test=false"]
    command += [f"model.net.pretrained={model}", f"strategy.num_iterations={iterations}", "data.max_length=64"]
    command += [f"hydra.run.dir={work / f'run-{rows}'}", f"paths.cache_dir={work / 'cache'}", "logger=none"]
    command += ["callbacks.progress_bar=null", "+trainer.enable_progress_bar=false"]
    seconds, rss, status, tail = timed_process(command, ROOT)
    if status != 0:
        raise SystemExit(f"textclf at {rows} rows failed ({status}):\n{tail}")
    pairs = 2 * iterations * round(rows * 0.99)
    return {"method": "textclf contrastive", "rows": rows, "pairs": pairs, "seconds": seconds, "peak_rss_mb": rss}


SETFIT_PAIRS = """
import sys, time
import pandas as pd
from setfit.sampler import ContrastiveDataset
frame = pd.read_csv(sys.argv[1])
started = time.perf_counter()
dataset = ContrastiveDataset(frame["text"].tolist(), frame["label"].tolist(), multilabel=False, num_iterations=20)
print(time.perf_counter() - started, len(dataset.pos_pairs) + len(dataset.neg_pairs))
"""


def setfit_pairs(rows: int, work: Path) -> dict:
    train_csv = work / f"setfit-{rows}.csv"
    training_rows(rows).to_csv(train_csv, index=False)
    seconds, rss, status, tail = timed_process([sys.executable, "-c", SETFIT_PAIRS, str(train_csv)], work)
    if status != 0:
        raise SystemExit(f"setfit at {rows} rows failed ({status}):\n{tail}")
    building, listed = tail.strip().splitlines()[-1].split()
    return {
        "method": "setfit ContrastiveDataset (pairs only)",
        "rows": rows,
        "pairs": int(listed),
        "seconds": float(building),
        "peak_rss_mb": rss,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", nargs="+", type=int, default=[10_000, 100_000], help="textclf's training rows")
    parser.add_argument("--iterations", type=int, default=1, help="strategy.num_iterations of the textclf runs")
    parser.add_argument("--setfit-rows", nargs="+", type=int, default=[1000, 2000, 4000])
    parser.add_argument("--out", type=Path, default=Path("docs/figures/fewshot_scale.json"))
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as temporary:
        work = Path(temporary)
        tiny_bert(work / "tiny-bert")
        for rows in args.rows:
            results.append(textclf_run(rows, work / "tiny-bert", work, args.iterations))
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)
        for rows in args.setfit_rows:
            results.append(setfit_pairs(rows, work))
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    table = pd.DataFrame(results)
    table["ms_per_row"] = 1000 * table["seconds"] / table["rows"]
    machine = machine_line(describe_machine())
    args.out.write_text(json.dumps({"machine": machine, "runs": results}, indent=1))
    print(f"On {machine}\n")
    print(table.to_markdown(index=False, floatfmt=".3g"))


if __name__ == "__main__":
    main()
