"""What the server refuses, and how: bad requests 400/422 and limits 413 with a JSON error naming what is
wrong, 401 without the key, 503 with Retry-After when the queue is full, 500 for a failing batch after which
it keeps serving; and its metrics, health and page routes."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from serving.conftest import SETTINGS, RunningServer, serve_cfg
from textclf.errors import SettingError
from textclf.serving.app import ServerSettings, build_app
from textclf.serving.server import load_model, settings_of


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"{not json", 400, "the body is not valid JSON"),
        (b'{"text": "a good film"}', 422, 'a JSON object with "inputs"'),
        (b'["a good film"]', 422, 'a JSON object with "inputs"'),
        (b'{"inputs": 5}', 422, "inputs must be a string, not int"),
        (b'{"inputs": ["fine", null]}', 422, "inputs[1] must be a string, not NoneType"),
        (b'{"inputs": []}', 422, "inputs is an empty list"),
        (b'{"inputs": {"text": "a", "text_pair": "b"}}', 422, "this model reads single texts, not pairs"),
        (b'{"inputs": {"txt": "a"}}', 422, "inputs must have the keys text and text_pair (got txt)"),
        (b'{"inputs": "a", "parameters": {"top_k": 0}}', 422, "parameters.top_k must be a positive integer, not 0"),
        (b'{"inputs": "a", "parameters": {"top_k": "2"}}', 422, 'parameters.top_k must be a positive integer, not "2"'),
        (b'{"inputs": "a", "parameters": {"function_to_apply": "relu"}}', 422, "function_to_apply must be one of"),
        (b'{"inputs": "a", "parameters": {"truncation": true}}', 422, "parameters: unknown truncation"),
        (b'{"inputs": "a", "parameters": [1]}', 422, "parameters must be an object, not list"),
        (b'{"inputs": "a", "parametres": {}}', 422, "unknown field parametres (known: inputs, parameters, options)"),
        (b'{"inputs": ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o", "p", "q"]}', 413,
         "inputs holds 17 texts (at most 16 a request)"),
        (b'{"inputs": ["fine", "' + b"x" * 2001 + b'"]}', 413, "inputs[1] has 2001 characters (at most 2000)"),
        (b'{"inputs": "' + b"a " * 40000 + b'"}', 413, "the body has 80014 bytes (at most 65536)"),
    ],
)  # fmt: skip
def test_a_bad_request_is_answered_with_a_json_error_naming_what_is_wrong(
    single_server, body: bytes, status: int, message: str
) -> None:
    for route in ("/", "/predict"):
        response = httpx.post(single_server.url + route, content=body, headers={"Content-Type": "application/json"})
        assert response.status_code == status, response.text
        assert message in response.json()["error"]


def test_a_body_without_content_length_is_cut_off_at_the_limit(single_server) -> None:
    def chunks():
        yield b'{"inputs": "'
        for _ in range(100):
            yield b"good " * 200
        yield b'"}'

    response = httpx.post(single_server.url + "/predict", content=chunks())  # chunked: no Content-Length
    assert response.status_code == 413 and "larger than 65536 bytes" in response.json()["error"]


def test_unknown_routes_and_methods_answer_json(single_server) -> None:
    missing = httpx.get(single_server.url + "/../../etc/passwd")
    assert missing.status_code == 404 and "Not Found" in missing.json()["error"]
    wrong_method = httpx.get(single_server.url + "/predict")
    assert wrong_method.status_code == 405 and "GET /predict" in wrong_method.json()["error"]


def test_a_text_naming_a_file_is_only_ever_classified(single_server, tmp_path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("a superb lovely brilliant film\n" * 10)
    as_path = httpx.post(single_server.url, json={"inputs": str(secret)}).json()
    as_text = httpx.post(single_server.url, json={"inputs": "a superb lovely brilliant film"}).json()
    assert as_path != as_text and httpx.post(single_server.url, json={"inputs": str(secret)}).json() == as_path


def test_with_an_api_key_every_route_but_health_needs_it(start_server) -> None:
    server = start_server("single", api_key="s3cret")
    for method, route in (("POST", "/"), ("POST", "/predict"), ("GET", "/info"), ("GET", "/metrics"), ("GET", "/")):
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            response = httpx.request(method, server.url + route, json={"inputs": "fine"}, headers=headers)
            assert response.status_code == 401, (route, headers)
            assert "API key" in response.json()["error"] and response.headers["WWW-Authenticate"] == "Bearer"
        allowed = httpx.request(
            method, server.url + route, json={"inputs": "fine"}, headers={"Authorization": "Bearer s3cret"}
        )
        assert allowed.status_code == 200, route
    assert httpx.get(server.url + "/health").status_code == 200


def test_the_key_comes_from_the_environment_and_settings_are_checked(tmp_path, monkeypatch, checkpoints) -> None:
    monkeypatch.setenv("TEXTCLF_API_KEY", "from-env")
    assert settings_of(serve_cfg(checkpoints["single"], tmp_path)).api_key == "from-env"
    assert settings_of(serve_cfg(checkpoints["single"], tmp_path, "api_key=given")).api_key == "given"
    for override, message in (
        ("max_batch_size=0", r"max_batch_size: 0 is out of range \(a whole number ≥ 1\)"),
        ("port=70000", r"port: 70000 is out of range \(a whole number from 0 to 65535; 0: any free port\)"),
    ):
        with pytest.raises(SettingError, match=message):
            settings_of(serve_cfg(checkpoints["single"], tmp_path, override))


async def crowd(url: str, first: list[str], second: list[str]) -> tuple[httpx.Response, httpx.Response, float]:
    """Two requests, the second sent while the first waits in the queue; and how long the second took."""
    async with httpx.AsyncClient(timeout=30) as client:
        waiting = asyncio.ensure_future(client.post(url, json={"inputs": first}))
        await asyncio.sleep(0.3)
        start = time.monotonic()
        refused = await client.post(url, json={"inputs": second})
        seconds = time.monotonic() - start
        return await waiting, refused, seconds


def test_a_full_queue_answers_503_with_retry_after_and_the_queued_requests_are_answered(start_server) -> None:
    server = start_server("single", max_queued_texts=3, max_wait_ms=1500, retry_after_seconds=2)
    waited, refused, seconds = asyncio.run(crowd(server.url, ["a good film", "a bad film"], ["one", "two"]))
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "2"
    assert "busy" in refused.json()["error"] and seconds < 1  # refused at once, not after the wait
    assert waited.status_code == 200 and len(waited.json()) == 2
    assert httpx.post(server.url, json={"inputs": ["one", "two"]}).status_code == 200


def test_a_failing_batch_answers_500_and_the_server_keeps_serving(checkpoints, tmp_path) -> None:
    model = load_model(serve_cfg(checkpoints["single"], tmp_path))
    forward = model.logits

    def runs_out_of_memory_on_poison(texts, pairs):  # the fault injected: the forward pass itself fails
        if "poison" in texts:
            raise RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return forward(texts, pairs)

    model.logits = runs_out_of_memory_on_poison
    server = RunningServer(build_app(model, ServerSettings(**SETTINGS)))
    try:
        failed = httpx.post(server.url, json={"inputs": ["fine", "poison"]})
        assert failed.status_code == 500 and "RuntimeError: CUDA out of memory" in failed.json()["error"]
        assert httpx.post(server.url, json={"inputs": ["fine"]}).status_code == 200
        metrics = httpx.get(server.url + "/metrics").text
        assert "textclf_failed_batches_total 1.0" in metrics
        assert 'textclf_errors_total{route="/",status="500"} 1.0' in metrics
    finally:
        server.stop()


def test_metrics_count_requests_errors_latency_batches_and_the_queue(start_server) -> None:
    server = start_server("single")
    httpx.post(server.url + "/predict", json={"inputs": ["a", "b", "c"]})
    httpx.post(server.url + "/predict", json={"inputs": 5})
    httpx.get(server.url + "/no-such-route")
    response = httpx.get(server.url + "/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    lines = response.text.splitlines()
    for expected in (
        'textclf_requests_total{route="/predict",status="200"} 1.0',
        'textclf_requests_total{route="/predict",status="422"} 1.0',
        'textclf_errors_total{route="other",status="404"} 1.0',
        'textclf_request_seconds_count{route="/predict"} 2.0',
        "textclf_batch_texts_sum 3.0",
        "textclf_queued_texts 0.0",
    ):
        assert expected in lines, expected


def test_health_info_and_the_page_by_content_negotiation(single_server) -> None:
    health = httpx.get(single_server.url + "/health")
    assert health.status_code == 200 and health.json() == {"ready": True}
    info = httpx.get(single_server.url + "/info").json()
    assert info["labels"] == ["negative", "positive"] and info["task"] == "single_label" and not info["pairs"]
    assert {"textclf_version", "base_model", "metrics"} <= set(info) and "test/acc" in info["metrics"]
    page = httpx.get(single_server.url + "/", headers={"Accept": "text/html,application/xhtml+xml"})
    assert page.headers["content-type"].startswith("text/html") and '<textarea id="text"' in page.text
    assert "http" not in page.text.split("<body>")[1].replace("http-equiv", "")  # nothing from elsewhere
    assert httpx.get(single_server.url + "/", headers={"Accept": "application/json"}).json() == info
    assert httpx.get(single_server.url + "/ui").text == page.text


def test_cors_is_off_unless_origins_are_configured(single_server, start_server) -> None:
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    closed = httpx.options(single_server.url + "/predict", headers=preflight)
    assert "access-control-allow-origin" not in closed.headers
    assert "access-control-allow-origin" not in httpx.get(single_server.url + "/info", headers=preflight).headers
    server = start_server("single", cors_origins=("https://app.example",))
    opened = httpx.options(server.url + "/predict", headers=preflight)
    assert opened.status_code == 200 and opened.headers["access-control-allow-origin"] == "https://app.example"
    other = httpx.options(server.url + "/predict", headers=preflight | {"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers
