"""`serve(cfg)`, behind `textclf-serve`: the checkpoint loaded once (without Lightning, as textclf-predict
loads it), warmed up, then served by uvicorn until SIGTERM or Ctrl-C, which stop taking connections, finish
the requests in flight (for at most `shutdown_seconds`) and exit with status 0.

    textclf-serve ckpt_path=run/checkpoints/best.ckpt [host=127.0.0.1] [port=8000] [api_key=...]
"""

from __future__ import annotations

import ipaddress
import os
import signal
from types import FrameType

import uvicorn
from omegaconf import DictConfig

from textclf.errors import SettingError
from textclf.inference.predictor import Predictor
from textclf.log import log
from textclf.serving.allocator import single_arena
from textclf.serving.answers import ServedModel
from textclf.serving.app import ServerSettings, build_app
from textclf.serving.protocol import Limits

API_KEY_VARIABLE = "TEXTCLF_API_KEY"
POSITIVE = (
    "max_batch_size",
    "max_queued_texts",
    "max_body_bytes",
    "max_texts_per_request",
    "max_chars_per_text",
    "max_explain_texts",
    "max_explain_steps",
    "max_queued_explanations",
)


def settings_of(cfg: DictConfig) -> ServerSettings:
    """The server's settings from the config, each checked; the API key from `api_key` or $TEXTCLF_API_KEY."""
    for key in POSITIVE:
        if not isinstance(cfg[key], int) or cfg[key] < 1:
            raise SettingError(f"{key} must be a positive integer, not {cfg[key]!r}")
    for key in ("max_wait_ms", "shutdown_seconds"):
        if cfg[key] < 0:
            raise SettingError(f"{key} must be 0 or more, not {cfg[key]}")
    if not 0 <= cfg.port <= 65535:
        raise SettingError(f"port must be between 0 and 65535, not {cfg.port}")
    limits = Limits(
        cfg.max_body_bytes,
        cfg.max_texts_per_request,
        cfg.max_chars_per_text,
        cfg.max_explain_texts,
        cfg.max_explain_steps,
    )
    return ServerSettings(
        limits,
        max_batch_size=cfg.max_batch_size,
        max_wait_ms=float(cfg.max_wait_ms),
        max_queued_texts=cfg.max_queued_texts,
        max_queued_explanations=cfg.max_queued_explanations,
        shutdown_seconds=float(cfg.shutdown_seconds),
        api_key=cfg.api_key or os.environ.get(API_KEY_VARIABLE) or None,
        cors_origins=tuple(cfg.cors_origins or ()),
        retry_after_seconds=cfg.retry_after_seconds,
    )


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def load_model(cfg: DictConfig) -> ServedModel:
    predictor = Predictor.from_settings(cfg, cfg.max_batch_size)
    model = ServedModel(predictor, cfg.ckpt_path)
    model.warm_up()
    return model


class ReadyServer(uvicorn.Server):
    """uvicorn's server, saying when it listens (after the model was loaded and warmed up)."""

    async def startup(self, sockets: list | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            log.info(f"ready: serving at http://{self.config.host}:{self.config.port} (GET /ui to try it)")


def stopping(signal_number: int, frame: FrameType | None) -> None:
    """What runs when uvicorn hands the signal it caught back after its graceful stop: nothing more (left to
    Python's default, SIGTERM would kill the process, exit status -15)."""
    log.info(f"stopped on {signal.Signals(signal_number).name}")


def serve(cfg: DictConfig) -> None:
    """Load, warm up, serve until told to stop."""
    settings = settings_of(cfg)
    if not single_arena():
        log.info("not glibc: the allocator keeps its own settings")
    model = load_model(cfg)
    if not is_loopback(cfg.host) and settings.api_key is None:
        log.warning(f"host={cfg.host}: anyone who reaches this address may use the model (set api_key)")
    config = uvicorn.Config(
        build_app(model, settings),
        host=cfg.host,
        port=cfg.port,
        log_config=None,  # uvicorn's loggers go where textclf's go
        access_log=cfg.access_log,
        timeout_graceful_shutdown=settings.shutdown_seconds,
    )
    server = ReadyServer(config)
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signal_number, stopping)
    try:
        server.run()
    except SystemExit:  # uvicorn exits when it cannot listen; it has logged why
        raise SettingError(f"cannot listen on {cfg.host}:{cfg.port} (in use, or not this machine's address)") from None
    if not server.started:
        raise SettingError(f"cannot listen on {cfg.host}:{cfg.port} (in use, or not this machine's address)")
