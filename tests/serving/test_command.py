"""`textclf-serve` as users run it: a process that loads, warms up, says it is ready, serves, and on SIGTERM
finishes the requests in flight and exits 0 within shutdown_seconds; a bad checkpoint ends it with one line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from conftest import LIGHTNING

from serving.conftest import free_port


def start(checkpoint: str | Path, tmp_path: Path, *overrides: str) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "textclf",
        "serve",
        f"ckpt_path={checkpoint}",
        f"hydra.run.dir={tmp_path / 'run'}",
        *overrides,
    ]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)


def wait_until_ready(url: str, process: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1]
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail("the server never became ready")


@pytest.mark.slow  # a process of its own: imports torch and loads the model
def test_sigterm_finishes_the_requests_in_flight_and_exits_0(checkpoints, tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = start(checkpoints["single"], tmp_path, f"port={port}", "max_wait_ms=1500", "shutdown_seconds=5")
    try:
        wait_until_ready(url, process)
        answers = []
        in_flight = threading.Thread(
            target=lambda: answers.append(httpx.post(url, json={"inputs": ["a good film"]}, timeout=30))
        )
        in_flight.start()
        time.sleep(0.5)  # the request now waits in the queue for its batch (max_wait_ms=1500)
        stopped = time.monotonic()
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
        in_flight.join(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr
    assert time.monotonic() - stopped < 5 + 2
    assert answers and answers[0].status_code == 200 and answers[0].json()[0][0]["label"] in ("negative", "positive")
    assert "ready: serving at http://127.0.0.1:" in stderr and "stopped on SIGTERM" in stderr
    with pytest.raises(httpx.TransportError):  # no longer listening
        httpx.get(url + "/health", timeout=1)


@pytest.mark.slow
def test_a_bad_checkpoint_ends_the_command_with_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "missing.ckpt"
    process = start(missing, tmp_path, f"port={free_port()}")
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 2
    assert stderr.strip().splitlines()[-1] == f"textclf: error: {missing}: checkpoint not found"


@pytest.mark.slow
def test_the_server_never_imports_lightning() -> None:
    code = "import json, sys, textclf.serving.server\nprint(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=os.environ)
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout)
    assert "fastapi" in loaded and "torch" in loaded and not set(LIGHTNING) & set(loaded)
