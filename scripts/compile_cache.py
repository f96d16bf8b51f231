"""torch.compile with Inductor's persistent caches: does a warm cache make compiling cheap enough to pay?

    .venv/bin/python scripts/compile_cache.py                       # 2,000 and 6,000 training sentences
    .venv/bin/python scripts/compile_cache.py --examples 500 1000   # a smoke run

For each training-set size, three `textclf-train` processes on the default experiment (rotten_tomatoes,
the packaged MiniLM, 1 epoch, validation and test as usual, no logger): eager (`model.compile=false`),
compiled with an empty Inductor cache (cold), and compiled again with the cache that the cold run filled
(warm: the same `TORCHINDUCTOR_CACHE_DIR`, which holds Inductor's FX-graph and AOTAutograd caches and its
autotuning results). Prints each process's wall time and test accuracy; from the two sizes, each setting's
seconds per 1,000 training examples and its fixed cost (everything that does not grow with the training
set, compiling included), and the training-set size from which compiling with a warm cache is faster than
eager. Run it alone on the machine.
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

SETTINGS = {"eager": "model.compile=false", "compiled, cold cache": "model.compile=true", "compiled, warm cache": ""}


def train(run_dir: Path, examples: int, compile_setting: str, inductor_cache: Path, args: argparse.Namespace) -> dict:
    command = [
        str(Path(sys.executable).with_name("textclf-train")),
        f"data.max_train_examples={examples}",
        "trainer.max_epochs=1",
        "logger=none",
        "callbacks.progress_bar=null",
        "+trainer.enable_progress_bar=false",
        f"hydra.run.dir={run_dir}",
        f"paths.cache_dir={args.cache_dir}",
        compile_setting or "model.compile=true",
    ]
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(inductor_cache), "TOKENIZERS_PARALLELISM": "false"}
    started = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - started
    if completed.returncode:
        print(completed.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"failed (exit {completed.returncode}): {' '.join(command)}")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {"wall s": round(seconds, 1), "test/acc": round(metrics["test/acc"], 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, nargs=2, default=[2000, 6000], help="two training-set sizes")
    parser.add_argument("--cache-dir", default=".cache/textclf", help="textclf's token cache (paths.cache_dir)")
    args = parser.parse_args()
    small, large = args.examples
    rows: dict[str, dict[int, dict]] = {name: {} for name in SETTINGS}
    with tempfile.TemporaryDirectory(prefix="compile-cache-") as scratch:
        for examples in (small, large):
            inductor_cache = Path(scratch) / f"inductor-{examples}"  # empty for the cold run of each size
            for name, setting in SETTINGS.items():
                run_dir = Path(scratch) / f"{examples}-{name.replace(' ', '_').replace(',', '')}"
                rows[name][examples] = train(run_dir, examples, setting, inductor_cache, args)
                print(f"{examples} examples, {name}: {rows[name][examples]}", file=sys.stderr, flush=True)

    print(f"| setting | wall s, {small:,} examples | wall s, {large:,} | s per 1,000 examples | fixed s | test acc |")
    print("|---|---|---|---|---|---|")
    slopes, fixed = {}, {}
    for name, by_size in rows.items():
        slopes[name] = (by_size[large]["wall s"] - by_size[small]["wall s"]) / (large - small) * 1000
        fixed[name] = by_size[small]["wall s"] - slopes[name] * small / 1000
        accuracy = " / ".join(str(by_size[n]["test/acc"]) for n in (small, large))
        print(
            f"| {name} | {by_size[small]['wall s']} | {by_size[large]['wall s']} | {slopes[name]:.2f} | "
            f"{fixed[name]:.1f} | {accuracy} |"
        )
    saved = slopes["eager"] - slopes["compiled, warm cache"]
    extra = fixed["compiled, warm cache"] - fixed["eager"]
    if saved > 0:
        print(f"\nWith a warm cache compiling pays from about {max(extra, 0) / saved * 1000:,.0f} training examples.")
    else:
        print("\nCompiled training was not faster per example: compiling never pays here.")


if __name__ == "__main__":
    main()
