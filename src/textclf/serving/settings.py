"""The schema of `textclf-serve` (serve.yaml) (`textclf.schema`). Light: no torch, no FastAPI."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from textclf.data.settings import AGGREGATIONS, MIN_LENGTH, TRUNCATIONS
from textclf.inference.settings import CHECKPOINT, DEVICE, PRECISIONS
from textclf.schema import POSITIVE, Rule, number, one_of, register, setting, whole


@dataclass
class ServeSettings:
    """conf/serve.yaml."""

    task_name: str = setting()
    ckpt_path: str = setting(CHECKPOINT)
    host: str = setting()
    port: int = setting(whole(0, 65535, note="0: any free port"))
    api_key: str | None = setting()
    cors_origins: Any = setting(
        Rule("a list of origins, e.g. [http://localhost:3000]", lambda value: isinstance(value, Sequence))
    )
    max_batch_size: int = setting(POSITIVE)
    max_wait_ms: float = setting(number(0))
    max_queued_texts: int = setting(POSITIVE)
    retry_after_seconds: int = setting(whole(0))
    max_body_bytes: int = setting(POSITIVE)
    max_texts_per_request: int = setting(POSITIVE)
    max_chars_per_text: int = setting(POSITIVE)
    max_explain_texts: int = setting(POSITIVE)
    max_explain_steps: int = setting(POSITIVE)
    max_queued_explanations: int = setting(POSITIVE)
    shutdown_seconds: float = setting(number(0))
    access_log: bool = setting()
    max_length: int | None = setting(whole(MIN_LENGTH, optional=True, note="as trained", unit="tokens"))
    truncation: str | None = setting(one_of(TRUNCATIONS, optional=True))
    window_aggregation: str | None = setting(one_of(AGGREGATIONS, optional=True))
    precision: str = setting(one_of(PRECISIONS))
    device: str = setting(DEVICE)
    quantize: bool = setting()
    paths: Any = setting()


register("serve", ServeSettings)
