"""The server's answers: Hugging Face's real InferenceClient against a real server, and the same answers as
textclf-predict for every kind of model, each text sent as its own concurrent request so that they batch."""

from __future__ import annotations

import asyncio
import json
import math
import random
from pathlib import Path

import httpx
import pandas as pd
import pytest
from conftest import FILLER, NEGATIVE, POSITIVE, compose_cfg, toy_pairs, toy_reviews, toy_scores

from serving.conftest import toy_tags
from textclf.inference.prediction import predict

huggingface_hub = pytest.importorskip("huggingface_hub")


def long_reviews(count: int) -> pd.DataFrame:
    """Reviews of 30 to 40 words: more than one window of 16 tokens each."""
    rng = random.Random(3)
    texts = [" ".join(rng.choices(FILLER + POSITIVE + NEGATIVE, k=rng.randint(30, 40))) for _ in range(count)]
    return pd.DataFrame({"text": texts})


TEXTS = {
    "single": lambda: toy_reviews(24, seed=9),
    "multi_label": lambda: toy_tags(24),
    "regression": lambda: toy_scores(24, seed=9),
    "pair": lambda: toy_pairs(24, seed=9),
    "window": lambda: long_reviews(12),
}


def predicted(checkpoint: str, frame: pd.DataFrame, tmp_path: Path, pairs: bool) -> list[dict]:
    """textclf-predict's rows for the texts of `frame` (JSONL)."""
    source, output = tmp_path / "texts.csv", tmp_path / "predictions.jsonl"
    frame.to_csv(source, index=False)
    column = ["text_column=a"] if pairs else []
    cfg = compose_cfg(
        tmp_path / "p",
        None,
        f"ckpt_path={checkpoint}",
        f"input={source}",
        f"output={output}",
        "precision=32-true",
        *column,
        config="predict",
    )
    predict(cfg)
    return [json.loads(line) for line in output.read_text().splitlines()]


async def post_each(url: str, inputs: list) -> list:
    """Every input as its own request, all at once."""
    async with httpx.AsyncClient(timeout=60) as client:
        responses = await asyncio.gather(*(client.post(url, json={"inputs": one}) for one in inputs))
    assert [response.status_code for response in responses] == [200] * len(inputs)
    return [response.json()[0] for response in responses]


@pytest.mark.parametrize("kind", list(TEXTS))
def test_answers_equal_textclf_predict(kind: str, checkpoints, start_server, tmp_path: Path) -> None:
    frame = TEXTS[kind]()
    pairs = kind == "pair"
    expected = predicted(checkpoints[kind], frame, tmp_path, pairs)
    server = start_server(kind, max_wait_ms=20)
    inputs = [{"text": a, "text_pair": b} for a, b in zip(frame["a"], frame["b"])] if pairs else list(frame["text"])
    answers = asyncio.run(post_each(server.url + "/predict", inputs))
    for row, answer in zip(expected, answers):
        scores = {item["label"]: item["score"] for item in answer}
        assert [item["score"] for item in answer] == sorted(scores.values(), reverse=True)  # best first
        if kind == "regression":
            (name,) = scores
            assert scores[name] == pytest.approx(row[name], abs=1e-4)
        elif kind == "multi_label":  # every label over its threshold, none else
            assert sorted(scores) == sorted(row["label"])
            assert all(scores[label] == pytest.approx(row["probabilities"][label], abs=1e-5) for label in scores)
        else:
            assert answer[0]["label"] == row["label"]
            assert scores == pytest.approx(row["probabilities"], abs=1e-5)
    metrics = httpx.get(server.url + "/metrics").text
    count = next(line for line in metrics.splitlines() if line.startswith("textclf_batch_texts_count"))
    assert float(count.split()[1]) < len(inputs)  # concurrent requests shared forward passes


def test_the_hugging_face_inference_client_works_unchanged(start_server) -> None:
    server = start_server("single")
    client = huggingface_hub.InferenceClient(model=server.url)
    text = "a superb film and a lovely story"
    answer = client.text_classification(text)
    direct = httpx.post(server.url + "/", json={"inputs": text}).json()[0]
    assert [(item.label, item.score) for item in answer] == [(item["label"], item["score"]) for item in direct]
    assert len(answer) == 2 and answer[0].score >= answer[1].score
    (best,) = client.text_classification(text, top_k=1)
    assert best.label == direct[0]["label"]
    logits = {item.label: item.score for item in client.text_classification(text, function_to_apply="none")}
    probabilities = {item["label"]: item["score"] for item in direct}
    ratio = math.log(probabilities["positive"] / probabilities["negative"])
    assert logits["positive"] - logits["negative"] == pytest.approx(ratio, abs=1e-4)  # the softmax's inputs


def test_the_client_sends_the_api_key_it_is_given(start_server) -> None:
    server = start_server("single", api_key="s3cret")
    with pytest.raises(huggingface_hub.errors.HfHubHTTPError) as refused:
        huggingface_hub.InferenceClient(model=server.url).text_classification("a good film")
    assert refused.value.response.status_code == 401
    answer = huggingface_hub.InferenceClient(model=server.url, token="s3cret").text_classification("a good film")
    assert {item.label for item in answer} == {"negative", "positive"}


def test_top_k_and_function_to_apply(start_server) -> None:
    server = start_server("multi_label")
    text = "a really good film and a very long boring plot it is"
    every = httpx.post(server.url, json={"inputs": [text], "parameters": {"top_k": 3}}).json()[0]
    assert len(every) == 3 and every == sorted(every, key=lambda item: -item["score"])
    softmax = httpx.post(server.url, json={"inputs": text, "parameters": {"function_to_apply": "softmax"}}).json()
    assert sum(item["score"] for item in softmax[0]) == pytest.approx(1, abs=1e-5) and len(softmax[0]) == 3
