"""Token attributions behind `POST /explain`: `textclf-explain`'s records (`Explainer`), for the served
checkpoint. An explanation costs many forward and backward passes, so explanations run in one worker thread
of their own, one at a time (the event loop and the prediction queue go on meanwhile), and at most
`max_queued` requests wait or run; past that they are refused (503).

The explainer is built at the first request, not at start: a server without captum (the `explain` extra)
starts and predicts, and answers `/explain` 503 saying what to install. It loads its own copy of the
checkpoint with fp32 weights, as `textclf-explain` does: the served weights may be 16-bit or int8, and captum
hooks the layer it attributes at, which a prediction running beside it must not pass through. It computes as
`textclf-explain` does by default (fp32), so a record's probability may differ from a 16-bit /predict answer
in the last digits."""

from __future__ import annotations

import asyncio
import importlib.util
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from textclf.errors import SettingError, first_line
from textclf.inference.explanation import CAPTUM_MISSING, Explainer
from textclf.log import log
from textclf.model.loading import load_trained
from textclf.serving.protocol import ExplainQuery, RequestError


def has_captum() -> bool:
    """Whether captum can be imported, without importing it (that takes a while, off the event loop)."""
    return importlib.util.find_spec("captum") is not None


class Explanations:
    """The checkpoint's explainer, built once when first asked, and the one thread that runs it."""

    def __init__(self, checkpoint: Path, device: str, max_queued: int) -> None:
        self.checkpoint, self.device, self.max_queued = checkpoint, device, max_queued
        self.explainer: Explainer | None = None
        self.thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="textclf-explain")
        self.pending = 0  # requests waiting for the thread or in it

    async def explain(self, query: ExplainQuery) -> list[dict[str, Any]]:
        """One record per text of `query`; a `RequestError` when captum is missing (503), too many
        explanations are pending (503), the request cannot be explained (422) or explaining fails (500)."""
        if not has_captum():
            raise RequestError(503, CAPTUM_MISSING)
        if self.pending >= self.max_queued:
            raise RequestError(503, f"the server is busy: {self.pending} explanations pending; try again shortly")
        self.pending += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self.thread, self.run, query)
        except SettingError as error:  # e.g. occlusion on a text longer than max_length
            raise RequestError(422, first_line(error)) from None
        except Exception as error:
            raise RequestError(500, f"the explanation failed: {type(error).__name__}: {first_line(error)}") from None
        finally:
            self.pending -= 1

    def run(self, query: ExplainQuery) -> list[dict[str, Any]]:
        """The records (blocking: in the explanation thread, which alone builds and uses the explainer)."""
        explainer = self.built()
        explainer = explainer.using(query.method or explainer.method, query.n_steps or explainer.n_steps)
        return explainer.explain(query.texts, query.pairs, query.target)

    def built(self) -> Explainer:
        if self.explainer is None:
            log.info(f"explanations: loading {self.checkpoint} (fp32 weights, {self.device}) for attributions")
            model = load_trained(self.checkpoint)
            self.explainer = Explainer(model, device=self.device)
        return self.explainer

    def stop(self) -> None:
        """No new explanations; the one running, if any, finishes in its thread."""
        self.thread.shutdown(wait=False, cancel_futures=True)
