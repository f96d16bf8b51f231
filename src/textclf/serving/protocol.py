"""Hugging Face's text-classification request schema, read and checked: `{"inputs": ..., "parameters": {...}}`
in, one list of `{"label", "score"}` per input out. `/explain` takes the same inputs with its own parameters.
Every mistake is a `RequestError` whose message names the field, with the HTTP status to answer (422 for a
wrong shape or type, 413 past a limit, 400 for bad JSON)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from textclf.inference.settings import ALL, EXPLAIN_METHODS, PREDICTED
from textclf.schema import is_whole

FUNCTIONS = ("sigmoid", "softmax", "none")
PARAMETERS = ("top_k", "function_to_apply")
EXPLAIN_PARAMETERS = ("target", "method", "n_steps")
# `options` (wait_for_model, use_cache) is what older Inference API clients send: taken, and nothing to do
FIELDS = ("inputs", "parameters", "options")


class RequestError(Exception):
    """A request the server refuses: `status` and the message of its `{"error": ...}` answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass(frozen=True)
class Limits:
    """What one request may hold (past these it is answered 413) and the most integrated gradients' steps an
    explanation may ask for."""

    max_body_bytes: int
    max_texts_per_request: int
    max_chars_per_text: int
    max_explain_texts: int
    max_explain_steps: int


@dataclass(frozen=True)
class Query:
    """A checked request: the texts (and second texts, for a pair model) and how to answer them."""

    texts: list[str]
    pairs: list[str] | None
    top_k: int | None
    function_to_apply: str | None


@dataclass(frozen=True)
class ExplainQuery:
    """A checked `/explain` request: the texts (and second texts) and what to explain; None: the explainer's
    default method or step count."""

    texts: list[str]
    pairs: list[str] | None
    target: str
    method: str | None
    n_steps: int | None


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


def parameters_of(parameters: Any, known: tuple[str, ...]) -> dict[str, Any]:
    """The `parameters` object (empty when absent), refused when it is not one or names an unknown key."""
    if parameters is None:
        return {}
    if not isinstance(parameters, dict):
        raise RequestError(422, f"parameters must be an object, not {type(parameters).__name__}")
    unknown = sorted(set(parameters) - set(known))
    if unknown:
        raise RequestError(422, f"parameters: unknown {', '.join(unknown)} (known: {', '.join(known)})")
    return parameters


def in_range(value: Any, low: int, high: int | None = None) -> bool:
    """An integer (not a bool) from `low` to `high`."""
    return is_whole(value) and low <= value and (high is None or value <= high)


def read_parameters(parameters: Any, regression: bool) -> tuple[int | None, str | None]:
    """`top_k` (a positive integer) and `function_to_apply` (sigmoid, softmax or none), each optional."""
    parameters = parameters_of(parameters, PARAMETERS)
    top_k, function = parameters.get("top_k"), parameters.get("function_to_apply")
    if top_k is not None and not in_range(top_k, 1):
        raise RequestError(422, f"parameters.top_k must be a positive integer, not {json.dumps(top_k)}")
    if function is not None and function not in FUNCTIONS:
        raise RequestError(422, f"parameters.function_to_apply must be one of {', '.join(FUNCTIONS)}, not {function!r}")
    if regression and function not in (None, "none"):
        raise RequestError(422, "parameters.function_to_apply: a regression model answers its score as it is")
    return top_k, function


def read_explain_parameters(parameters: Any, labels: list[str], max_steps: int) -> tuple[str, str | None, int | None]:
    """`target` (predicted, all or a label's name; predicted when absent), `method` (one of the explanation
    methods) and `n_steps` (1 to `max_steps`), the last two optional."""
    parameters = parameters_of(parameters, EXPLAIN_PARAMETERS)
    target, method, n_steps = (parameters.get(name) for name in EXPLAIN_PARAMETERS)
    if target is not None and target not in (PREDICTED, ALL, *labels):
        allowed = f"{PREDICTED}, {ALL} or a label of this model ({', '.join(labels)})"
        raise RequestError(422, f"parameters.target must be {allowed}, not {json.dumps(target)}")
    if method is not None and method not in EXPLAIN_METHODS:
        allowed = ", ".join(EXPLAIN_METHODS)
        raise RequestError(422, f"parameters.method must be one of {allowed}, not {json.dumps(method)}")
    if n_steps is not None and not in_range(n_steps, 1, max_steps):
        raise RequestError(
            422, f"parameters.n_steps must be a whole number from 1 to {max_steps}, not {json.dumps(n_steps)}"
        )
    return target or PREDICTED, method, n_steps


def check_limits(texts: list[str], pairs: list[str] | None, limits: Limits, most: int, per: str) -> None:
    """413 past `most` texts `per` request, or for a text (or second text) over `max_chars_per_text`."""
    if len(texts) > most:
        raise RequestError(413, f"inputs holds {len(texts)} texts (at most {most} {per})")
    for index, text in enumerate([*texts, *(pairs or [])]):
        if len(text) > limits.max_chars_per_text:
            which = f"inputs[{index}]" if index < len(texts) else f"inputs[{index - len(texts)}].text_pair"
            raise RequestError(413, f"{which} has {len(text)} characters (at most {limits.max_chars_per_text})")


def read_request(body: bytes, pairs: bool) -> tuple[list[str], list[str] | None, Any]:
    """The texts, second texts and (unread) parameters of a request's body: `{"inputs", "parameters"}`."""
    payload = parse_json(body)
    if not isinstance(payload, dict) or "inputs" not in payload:
        raise RequestError(422, 'the body must be a JSON object with "inputs" (a text or a list of texts)')
    unknown = sorted(set(payload) - set(FIELDS))
    if unknown:
        raise RequestError(422, f"unknown field {', '.join(unknown)} (known: {', '.join(FIELDS)})")
    texts, seconds = read_inputs(payload["inputs"], pairs)
    return texts, seconds, payload.get("parameters")


def parse_query(body: bytes, limits: Limits, pairs: bool, regression: bool) -> Query:
    """The checked request in `body`, or a `RequestError` naming what is wrong."""
    texts, seconds, parameters = read_request(body, pairs)
    top_k, function = read_parameters(parameters, regression)
    check_limits(texts, seconds, limits, limits.max_texts_per_request, "a request")
    return Query(texts, seconds, top_k, function)


def parse_explain_query(body: bytes, limits: Limits, pairs: bool, labels: list[str]) -> ExplainQuery:
    """The checked `/explain` request in `body` (the inputs of `/predict`, its own parameters and a smaller
    limit on texts: an explanation costs many forward and backward passes), or a `RequestError`."""
    texts, seconds, parameters = read_request(body, pairs)
    target, method, n_steps = read_explain_parameters(parameters, labels, limits.max_explain_steps)
    check_limits(texts, seconds, limits, limits.max_explain_texts, "a request to /explain")
    return ExplainQuery(texts, seconds, target, method, n_steps)
