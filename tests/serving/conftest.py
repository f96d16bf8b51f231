"""Tiny checkpoints of every kind the server answers for (single-label, multi-label, regression, pairs,
windows), and a real server on a free loopback port, run in this process by uvicorn in a thread."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest
from conftest import compose_cfg, toy_pairs, toy_reviews, toy_scores, toy_training

uvicorn = pytest.importorskip("uvicorn")
from textclf.serving.app import ServerSettings, build_app  # noqa: E402
from textclf.serving.protocol import Limits  # noqa: E402
from textclf.serving.server import load_model  # noqa: E402


def toy_tags(count: int) -> pd.DataFrame:
    """Reviews tagged with their sentiment and `long` when over 10 words: one, two labels, or `long` alone."""
    frame = toy_reviews(count, seed=5)
    long = frame["text"].str.split().str.len() > 10
    frame["label"] = [f"{label}|long" if is_long else label for label, is_long in zip(frame["label"], long)]
    return frame


# each kind: its training rows and the overrides that read them
KINDS = {
    "single": (lambda: toy_reviews(300), ()),
    "multi_label": (lambda: toy_tags(300), ("data.multi_label=true", "data.label_delimiter=|")),
    "regression": (lambda: toy_scores(300), ("data.task=regression",)),
    "pair": (lambda: toy_pairs(300), ("data.text_column=a", "data.text_pair_column=b")),
    "window": (
        lambda: toy_reviews(300),
        ("data.long_texts=window", "data.max_length=16", "data.window_stride=4"),
    ),
}


@pytest.fixture(scope="session")
def checkpoints(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The best checkpoint of a tiny model trained briefly (2 epochs) on each kind of toy data."""
    from textclf.training.fit import train

    found = {}
    for kind, (rows, overrides) in KINDS.items():
        root = tmp_path_factory.mktemp(f"serve-{kind}")
        csv = root / "train.csv"
        rows().to_csv(csv, index=False)
        cfg = compose_cfg(root / "run", tiny_model_dir, *toy_training(csv), "trainer.max_epochs=2", *overrides)
        _, objects = train(cfg)
        found[kind] = objects["trainer"].checkpoint_callback.best_model_path
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def serve_cfg(checkpoint: str, tmp_path: Path, *overrides: str):
    return compose_cfg(
        tmp_path / "serve", None, f"ckpt_path={checkpoint}", "precision=32-true", *overrides, config="serve"
    )


# small limits, so that the tests reach them with small requests
SETTINGS = dict(
    limits=Limits(
        max_body_bytes=65536,
        max_texts_per_request=16,
        max_chars_per_text=2000,
        max_explain_texts=4,
        max_explain_steps=64,
    ),
    max_batch_size=8,
    max_wait_ms=5,
    max_queued_texts=256,
    max_queued_explanations=8,
    shutdown_seconds=5,
    api_key=None,
    cors_origins=(),
    retry_after_seconds=1,
)


class RunningServer:
    """uvicorn serving an app on a free port in a thread; `url`, `app`, and `stop()`."""

    def __init__(self, app) -> None:
        self.app, self.port = app, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_config=None))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "the server did not start"
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture(scope="session")
def start_server(checkpoints: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """`start_server(kind, **settings)`: a running server of that kind's checkpoint; all stopped at the end."""
    running: list[RunningServer] = []
    models = {}

    def start(kind: str, **settings) -> RunningServer:
        if kind not in models:
            models[kind] = load_model(serve_cfg(checkpoints[kind], tmp_path_factory.mktemp("cfg")))
        server = RunningServer(build_app(models[kind], ServerSettings(**(SETTINGS | settings))))
        running.append(server)
        return server

    yield start
    for server in running:
        server.stop()


@pytest.fixture(scope="session")
def single_server(start_server) -> RunningServer:
    return start_server("single")


def post(url: str, payload=None, **options) -> httpx.Response:
    return httpx.post(url, json=payload, timeout=30, **options) if payload is not None else httpx.post(url, **options)
