"""Texts done of a total, with texts/s and the time left: a progress bar when standard error is a terminal,
else log lines (a SLURM or CI log, a redirected run). Apart from `training/progress_log.py`'s callback, which
imports Lightning: `textclf-predict` uses this one."""

from __future__ import annotations

import sys
import time

from rich.progress import Progress, TextColumn, TimeRemainingColumn

from textclf.log import duration, log


class TextProgress:
    """Texts done of `total` (None: unknown), with texts/s and the time left: a progress bar when standard
    error is a terminal, else a log line at every `advance`."""

    def __init__(self, what: str, total: int | None) -> None:
        self.what, self.total, self.done = what, total, 0
        self.bar = Progress(
            *Progress.get_default_columns()[:-1],
            TextColumn("{task.fields[rate]} texts/s"),
            TimeRemainingColumn(),
            transient=True,
            disable=not sys.stderr.isatty(),
        )

    def __enter__(self) -> TextProgress:
        self.started = time.perf_counter()
        self.bar.__enter__()
        self.task = self.bar.add_task(self.what, total=self.total, rate="-")
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.__exit__(*exc)

    def advance(self, texts: int) -> None:
        self.done += texts
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        rate = self.done / elapsed
        self.bar.update(self.task, advance=texts, rate=f"{rate:.1f}")
        if self.bar.disable:
            line = f"{self.what}: {self.done}" + (f"/{self.total}" if self.total else "") + " texts"
            line += f", {rate:.1f} texts/s, {duration(elapsed)} elapsed"
            if self.total and self.total > self.done:
                line += f", {duration((self.total - self.done) / rate)} left"
            log.info(line)
