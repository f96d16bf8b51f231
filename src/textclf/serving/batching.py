"""The batching queue: concurrent requests gathered into one forward pass. A batch closes when it holds
`max_batch_size` texts or `max_wait_ms` after its first request arrived; it runs in one worker thread (the
event loop keeps taking requests meanwhile, which fill the next batch). The queue is bounded in texts: past
`max_queued_texts` a request is refused at once (the server answers 503) instead of waiting ever longer."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from textclf.log import log
from textclf.serving.metrics import ServerMetrics

Forward = Callable[[list[str], list[str] | None], np.ndarray]


class Overloaded(Exception):
    """The queue holds `max_queued_texts` already: try again later."""


@dataclass
class Job:
    """One request's texts waiting for their logits."""

    texts: list[str]
    pairs: list[str] | None
    future: asyncio.Future
    arrived: float = field(default_factory=time.monotonic)


class BatchingQueue:
    """Requests in, logits out, `max_batch_size` texts per forward pass at most (a larger request goes
    alone: the predictor splits it)."""

    def __init__(
        self, forward: Forward, max_batch_size: int, max_wait_ms: float, max_queued_texts: int, metrics: ServerMetrics
    ) -> None:
        self.forward, self.metrics = forward, metrics
        self.max_batch_size, self.max_wait = max_batch_size, max_wait_ms / 1000
        self.max_queued_texts = max_queued_texts
        self.jobs: deque[Job] = deque()
        self.queued_texts = 0  # accepted and not yet answered
        self.arrived = asyncio.Event()
        self.thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="textclf-forward")
        self.worker: asyncio.Task | None = None

    def start(self) -> None:
        self.worker = asyncio.get_running_loop().create_task(self.run())

    async def stop(self, seconds: float) -> None:
        """Answer what is queued (for at most `seconds`), then stop the worker."""
        deadline = time.monotonic() + seconds
        while self.queued_texts and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if self.worker is not None:
            self.worker.cancel()
        self.thread.shutdown(wait=False, cancel_futures=True)

    async def submit(self, texts: list[str], pairs: list[str] | None) -> np.ndarray:
        """The logits of `texts`, once their batch has run; `Overloaded` when the queue is full."""
        if self.queued_texts + len(texts) > self.max_queued_texts:
            raise Overloaded(f"{self.queued_texts} texts are queued (at most {self.max_queued_texts})")
        job = Job(texts, pairs, asyncio.get_running_loop().create_future())
        self.jobs.append(job)
        self.queued_texts += len(texts)
        self.metrics.queued_texts.set(self.queued_texts)
        self.arrived.set()
        try:
            return await job.future
        finally:
            self.queued_texts -= len(texts)
            self.metrics.queued_texts.set(self.queued_texts)

    async def next_batch(self) -> list[Job]:
        """The jobs of the next forward pass: wait for a first one, then for more until the batch is full
        or the first has waited `max_wait`."""
        while not self.jobs:
            self.arrived.clear()
            await self.arrived.wait()
        batch, size = [], 0
        while True:
            while self.jobs and (not batch or size + len(self.jobs[0].texts) <= self.max_batch_size):
                job = self.jobs.popleft()
                batch.append(job)
                size += len(job.texts)
            left = batch[0].arrived + self.max_wait - time.monotonic()
            if size >= self.max_batch_size or left <= 0 or self.jobs:
                return batch
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), left)
            except asyncio.TimeoutError:
                return batch

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [job for job in await self.next_batch() if not job.future.done()]  # done: the client left
            if not batch:
                continue
            texts = [text for job in batch for text in job.texts]
            pairs = [text for job in batch for text in job.pairs] if batch[0].pairs is not None else None
            self.metrics.batch_texts.observe(len(texts))
            try:
                logits = await loop.run_in_executor(self.thread, self.forward, texts, pairs)
            except Exception as error:  # out of memory, a broken model: these requests fail, the server goes on
                log.error(f"a batch of {len(texts)} texts failed: {type(error).__name__}: {error}")
                self.metrics.failed_batches.inc()
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(error)
                continue
            start = 0
            for job in batch:
                if not job.future.done():
                    job.future.set_result(logits[start : start + len(job.texts)])
                start += len(job.texts)
