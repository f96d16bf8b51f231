"""The time from a `textclf-*` command's start to its one-line error, for every mistake of
tests/test_settings.py (the cases of issue 26 and more), each as a whole process as a user would run it.

    .venv/bin/python scripts/setting_errors.py [--repeat 3] [--output docs/setting_errors.md]

Prints a Markdown table: the command, the line it printed, its exit status and the median wall seconds.
A mistake must cost no model load, no data read, and no import of torch or Lightning.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_settings import CASES  # noqa: E402  (the one list of cases, shared with the tests)


def run_case(command: str, overrides: list[str], repeat: int) -> tuple[str, int, float]:
    """The stderr line, the exit status and the median seconds of `python -m textclf command overrides`."""
    seconds, env = [], {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as scratch:
            started = time.perf_counter()
            result = subprocess.run(
                [sys.executable, "-m", "textclf", command, *overrides, f"hydra.run.dir={scratch}/run"],
                capture_output=True,
                text=True,
                env=env,
                cwd=scratch,
            )
            seconds.append(time.perf_counter() - started)
    return result.stderr.strip(), result.returncode, statistics.median(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--output", type=Path, help="also write the table to this Markdown file")
    arguments = parser.parse_args()
    rows = ["| command | output | exit | seconds |", "|---|---|---|---|"]
    for command, overrides, _ in CASES:
        line, status, seconds = run_case(command, overrides, arguments.repeat)
        shown = " ".join(overrides).replace("|", "\\|")
        rows.append(f"| `textclf-{command} {shown}` | `{line.replace('|', '/')}` | {status} | {seconds:.2f} |")
        print(rows[-1], flush=True)
    if arguments.output:
        arguments.output.write_text("\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
