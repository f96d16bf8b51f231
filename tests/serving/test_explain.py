"""`POST /explain` against a real server: the records of `explain_texts` on the same checkpoint and texts,
integrated gradients' completeness checked against the server's own predictions of the text and of its
baseline, segments for pairs; the key, the parameters and the limits refused as /predict refuses them; 503
without captum; explanations off the event loop, one at a time, bounded."""

from __future__ import annotations

import asyncio
import sys
import threading
from dataclasses import replace

import httpx
import pytest
from conftest import toy_pairs, toy_reviews, toy_scores

from serving.conftest import SETTINGS, post
from textclf.inference.explanation import explain_texts
from textclf.model.loading import load_trained

pytest.importorskip("captum")

# each kind: its inputs as /explain takes them, and (texts, second texts) as explain_texts takes them
PAIRS = toy_pairs(5, seed=11)
INPUTS = {
    "single": toy_reviews(6, seed=11)["text"].tolist(),
    "pair": [{"text": a, "text_pair": b} for a, b in zip(PAIRS["a"], PAIRS["b"])],
    "regression": toy_scores(5, seed=11)["text"].tolist(),
}


def texts_of(inputs: list) -> tuple[list[str], list[str] | None]:
    if isinstance(inputs[0], dict):
        return [one["text"] for one in inputs], [one["text_pair"] for one in inputs]
    return inputs, None


def baseline_input(record: dict) -> str | dict:
    """The record's baseline as a text the server predicts: a [PAD] for each token of each text (the
    tokenizer reads `[PAD]` as the pad id, and the baseline keeps the special tokens)."""
    segments = record.get("segment") or [0] * len(record["tokens"])
    pads = [" ".join(["[PAD]"] * segments.count(segment)) for segment in (0, 1)]
    return {"text": pads[0], "text_pair": pads[1]} if "segment" in record else pads[0]


def served_value(url: str, one: str | dict, target: str) -> float:
    """What the server answers for the target: its probability, or the regression score."""
    answer = post(url + "/predict", {"inputs": one}).json()[0]
    return next(item["score"] for item in answer if item["label"] == target)


def words_of(record: dict) -> list[str]:
    """The characters each token's offsets point at, in the text its segment names."""
    texts = [record["text"], record.get("text_pair")]
    segments = record.get("segment") or [0] * len(record["tokens"])
    return [texts[segment][start:end] for (start, end), segment in zip(record["offsets"], segments)]


@pytest.mark.parametrize("kind", list(INPUTS))
def test_explain_answers_the_records_of_explain_texts_and_they_are_complete(kind, checkpoints, start_server) -> None:
    server = start_server(kind, limits=replace(SETTINGS["limits"], max_explain_texts=8))
    response = post(server.url + "/explain", {"inputs": INPUTS[kind]})
    assert response.status_code == 200, response.text
    records = response.json()
    texts, pairs = texts_of(INPUTS[kind])
    expected = explain_texts(load_trained(checkpoints[kind]), texts, pairs, precision="32-true")
    assert records == expected  # the records of textclf-explain, number for number
    changes, tolerances = [], []
    for record in records:
        assert record["method"] == "integrated_gradients" and len(record["attributions"]) == len(record["tokens"])
        assert words_of(record) == [*record["text"].split(), *record.get("text_pair", "").split()]
        if kind == "pair":
            assert record["segment"] == [0] * len(record["text"].split()) + [1] * len(record["text_pair"].split())
        # completeness: the attributions sum to f(text) - f(baseline) but for completeness_delta, with f(text)
        # and f(baseline) as the server predicts them; to within the records' rounding (5 significant digits)
        value = record["score"] if kind == "regression" else record["probabilities"][record["target"]]
        change = value - served_value(server.url, baseline_input(record), record["target"])
        tolerance = 1e-5 * sum(abs(a) for a in record["attributions"]) + 2e-6 * (1 + abs(value))
        residual = sum(record["attributions"]) - change - record["completeness_delta"]
        assert abs(residual) <= tolerance, record["text"]
        assert abs(record["completeness_delta"]) <= 0.01 * abs(change) + 1e-6
        changes.append(abs(change))
        tolerances.append(tolerance)
    assert max(changes) > 10 * max(tolerances)  # the check resolves the change it is about


def test_explain_takes_its_parameters(start_server) -> None:
    server = start_server("single")
    text = "a superb film"
    every = post(server.url + "/explain", {"inputs": text, "parameters": {"target": "all"}}).json()[0]
    assert every["target"] == ["negative", "positive"] and set(every["attributions"]) == {"negative", "positive"}
    negative = post(server.url + "/explain", {"inputs": [text], "parameters": {"target": "negative"}}).json()[0]
    assert negative["target"] == "negative"
    assert negative["attributions"] == pytest.approx(every["attributions"]["negative"], rel=1e-3, abs=1e-6)
    for method in ("gradient_x_input", "occlusion"):
        (record,) = post(server.url + "/explain", {"inputs": text, "parameters": {"method": method}}).json()
        assert record["method"] == method and record["completeness_delta"] is None
        assert len(record["attributions"]) == len(record["tokens"]) == 3
    few = post(server.url + "/explain", {"inputs": text, "parameters": {"n_steps": 2}}).json()[0]
    many = post(server.url + "/explain", {"inputs": text, "parameters": {"n_steps": 64}}).json()[0]
    assert few["attributions"] != many["attributions"]  # n_steps reaches the explainer


@pytest.mark.parametrize(
    ("payload", "status", "message"),
    [
        ({"inputs": "a", "parameters": {"method": "lime"}}, 422,
         'parameters.method must be one of integrated_gradients, gradient_x_input, occlusion, not "lime"'),
        ({"inputs": "a", "parameters": {"target": "neutral"}}, 422,
         'parameters.target must be predicted, all or a label of this model (negative, positive), not "neutral"'),
        ({"inputs": "a", "parameters": {"n_steps": 0}}, 422, "parameters.n_steps must be a whole number from 1 to 64"),
        ({"inputs": "a", "parameters": {"n_steps": 65}}, 422, "parameters.n_steps must be a whole number from 1 to 64"),
        ({"inputs": "a", "parameters": {"top_k": 1}}, 422, "parameters: unknown top_k (known: target, method"),
        ({"inputs": {"text": "a", "text_pair": "b"}}, 422, "this model reads single texts, not pairs"),
        ({"inputs": []}, 422, "inputs is an empty list"),
        ({"inputs": ["a", "b", "c", "d", "e"]}, 413, "inputs holds 5 texts (at most 4 a request to /explain)"),
        ({"inputs": ["fine", "x" * 2001]}, 413, "inputs[1] has 2001 characters (at most 2000)"),
    ],
)  # fmt: skip
def test_a_bad_explain_request_is_refused_naming_what_is_wrong(single_server, payload, status, message) -> None:
    response = post(single_server.url + "/explain", payload)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]


def test_occlusion_of_a_text_longer_than_a_window_is_refused_naming_the_method(start_server) -> None:
    server = start_server("window")  # windows of 16 tokens
    long_text = " ".join(toy_reviews(6, seed=12)["text"])
    occluded = post(server.url + "/explain", {"inputs": long_text, "parameters": {"method": "occlusion"}})
    assert occluded.status_code == 422 and "method=occlusion" in occluded.json()["error"]
    (record,) = post(server.url + "/explain", {"inputs": long_text}).json()  # integrated gradients: every token
    assert len(record["attributions"]) == len(record["tokens"]) == len(long_text.split())


def test_explain_needs_the_key(start_server) -> None:
    server = start_server("single", api_key="s3cret")
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        refused = post(server.url + "/explain", {"inputs": "a good film"}, headers=headers)
        assert refused.status_code == 401 and "API key" in refused.json()["error"]
    allowed = post(server.url + "/explain", {"inputs": "a good film"}, headers={"Authorization": "Bearer s3cret"})
    assert allowed.status_code == 200 and allowed.json()[0]["text"] == "a good film"


def test_without_captum_explain_answers_503_and_the_server_still_predicts(start_server, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "captum", None)  # what `import captum` finds when it is not installed
    server = start_server("single", retry_after_seconds=3)
    refused = post(server.url + "/explain", {"inputs": "a good film"})
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "3"
    assert refused.json() == {"error": "explanations need captum: pip install 'textclf[explain]'"}
    assert post(server.url + "/predict", {"inputs": "a good film"}).status_code == 200


class HeldExplanations:
    """Wraps a server's explanation runner: each run waits for `release` and notes how many ran at once."""

    def __init__(self, server) -> None:
        self.explanations = server.app.state.server.explanations
        self.run, self.release, self.lock = self.explanations.run, threading.Event(), threading.Lock()
        self.running = self.most_at_once = 0
        self.explanations.run = self.held

    def held(self, query):
        with self.lock:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        try:
            assert self.release.wait(30)
            return self.run(query)
        finally:
            with self.lock:
                self.running -= 1


async def while_explaining(
    url: str, held: HeldExplanations, waiting: int
) -> tuple[list, httpx.Response, httpx.Response]:
    """`waiting` explanations sent and held; meanwhile one more explanation and a prediction; then released."""
    payload = {"inputs": "a good film"}
    async with httpx.AsyncClient(timeout=60) as client:
        sent = [asyncio.ensure_future(client.post(url + "/explain", json=payload)) for _ in range(waiting)]
        await asyncio.sleep(0.5)
        refused = await client.post(url + "/explain", json=payload)
        predicted = await client.post(url + "/predict", json=payload)
        held.release.set()
        return [await one for one in sent], refused, predicted


def test_explanations_run_off_the_event_loop_one_at_a_time_and_are_bounded(start_server) -> None:
    server = start_server("single", max_queued_explanations=2, retry_after_seconds=2)
    held = HeldExplanations(server)
    answered, refused, predicted = asyncio.run(while_explaining(server.url, held, waiting=2))
    assert predicted.status_code == 200  # predictions go on while an explanation runs
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "2"
    assert "2 explanations pending" in refused.json()["error"]
    assert [response.status_code for response in answered] == [200, 200] and held.most_at_once == 1
    assert post(server.url + "/explain", {"inputs": "a good film"}).status_code == 200  # the bound frees up
    assert 'textclf_requests_total{route="/explain",status="503"} 1.0' in httpx.get(server.url + "/metrics").text
