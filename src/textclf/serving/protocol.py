"""Hugging Face's text-classification request schema, read and checked: `{"inputs": ..., "parameters": {...}}`
in, one list of `{"label", "score"}` per input out. Every mistake is a `RequestError` whose message names the
field, with the HTTP status to answer (422 for a wrong shape or type, 413 past a limit, 400 for bad JSON)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

FUNCTIONS = ("sigmoid", "softmax", "none")
PARAMETERS = ("top_k", "function_to_apply")
# `options` (wait_for_model, use_cache) is what older Inference API clients send: taken, and nothing to do
FIELDS = ("inputs", "parameters", "options")


class RequestError(Exception):
    """A request the server refuses: `status` and the message of its `{"error": ...}` answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass(frozen=True)
class Limits:
    """What one request may hold; past these it is answered 413."""

    max_body_bytes: int
    max_texts_per_request: int
    max_chars_per_text: int


@dataclass(frozen=True)
class Query:
    """A checked request: the texts (and second texts, for a pair model) and how to answer them."""

    texts: list[str]
    pairs: list[str] | None
    top_k: int | None
    function_to_apply: str | None


def parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RequestError(400, f"the body is not valid JSON ({error})") from None


def text_of(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise RequestError(422, f"{where} must be a string, not {type(value).__name__}")
    return value


def one_input(value: Any, where: str) -> tuple[str, str | None]:
    """A text, or a `{"text": ..., "text_pair": ...}` object: (text, second text or None)."""
    if isinstance(value, dict):
        unknown = sorted(set(value) - {"text", "text_pair"})
        if unknown or "text" not in value:
            raise RequestError(422, f"{where} must have the keys text and text_pair (got {', '.join(sorted(value))})")
        second = value.get("text_pair")
        text = text_of(value["text"], f"{where}.text")
        return text, None if second is None else text_of(second, f"{where}.text_pair")
    return text_of(value, where), None


def read_inputs(inputs: Any, pairs: bool) -> tuple[list[str], list[str] | None]:
    """The texts of `inputs` (a text, a list of texts, a pair object or a list of them), and their second
    texts when the model reads pairs."""
    items = inputs if isinstance(inputs, list) else [inputs]
    if not items:
        raise RequestError(422, "inputs is an empty list: send at least one text")
    where = [f"inputs[{index}]" for index in range(len(items))] if isinstance(inputs, list) else ["inputs"]
    read = [one_input(item, name) for item, name in zip(items, where)]
    seconds = [second for _, second in read]
    if pairs and None in seconds:
        name = where[seconds.index(None)]
        raise RequestError(422, f'{name}: this model reads pairs of texts: send {{"text": ..., "text_pair": ...}}')
    if not pairs and any(second is not None for second in seconds):
        raise RequestError(422, "inputs: this model reads single texts, not pairs: send no text_pair")
    return [text for text, _ in read], seconds if pairs else None


def read_parameters(parameters: Any, regression: bool) -> tuple[int | None, str | None]:
    """`top_k` (a positive integer) and `function_to_apply` (sigmoid, softmax or none), each optional."""
    if parameters is None:
        return None, None
    if not isinstance(parameters, dict):
        raise RequestError(422, f"parameters must be an object, not {type(parameters).__name__}")
    unknown = sorted(set(parameters) - set(PARAMETERS))
    if unknown:
        raise RequestError(422, f"parameters: unknown {', '.join(unknown)} (known: {', '.join(PARAMETERS)})")
    top_k, function = parameters.get("top_k"), parameters.get("function_to_apply")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise RequestError(422, f"parameters.top_k must be a positive integer, not {json.dumps(top_k)}")
    if function is not None and function not in FUNCTIONS:
        raise RequestError(422, f"parameters.function_to_apply must be one of {', '.join(FUNCTIONS)}, not {function!r}")
    if regression and function not in (None, "none"):
        raise RequestError(422, "parameters.function_to_apply: a regression model answers its score as it is")
    return top_k, function


def check_limits(texts: list[str], pairs: list[str] | None, limits: Limits) -> None:
    if len(texts) > limits.max_texts_per_request:
        raise RequestError(413, f"inputs holds {len(texts)} texts (at most {limits.max_texts_per_request} a request)")
    for index, text in enumerate([*texts, *(pairs or [])]):
        if len(text) > limits.max_chars_per_text:
            which = f"inputs[{index}]" if index < len(texts) else f"inputs[{index - len(texts)}].text_pair"
            raise RequestError(413, f"{which} has {len(text)} characters (at most {limits.max_chars_per_text})")


def parse_query(body: bytes, limits: Limits, pairs: bool, regression: bool) -> Query:
    """The checked request in `body`, or a `RequestError` naming what is wrong."""
    payload = parse_json(body)
    if not isinstance(payload, dict) or "inputs" not in payload:
        raise RequestError(422, 'the body must be a JSON object with "inputs" (a text or a list of texts)')
    unknown = sorted(set(payload) - set(FIELDS))
    if unknown:
        raise RequestError(422, f"unknown field {', '.join(unknown)} (known: {', '.join(FIELDS)})")
    texts, seconds = read_inputs(payload["inputs"], pairs)
    top_k, function = read_parameters(payload.get("parameters"), regression)
    check_limits(texts, seconds, limits)
    return Query(texts, seconds, top_k, function)
