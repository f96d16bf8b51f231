"""Which words made a trained classifier say what it said: token attributions for every model textclf trains
(single-label, multi-label, regression, text pairs, long texts in windows; LoRA and calibrated checkpoints
alike), as plain JSON-ready records. `explain_texts` is the one entry point (`textclf-explain`, `textclf-eval`'s
misclassified.html and any server call it); docs/explain.md has the methods and their measured quality.

Each record holds the text, the prediction, what was explained (`target`), the tokens with their character
spans in the text (`offsets`; `segment` says which text of a pair), one signed attribution per token
(positive: towards the target) and, for integrated gradients, `completeness_delta`: the sum of the
attributions minus f(text) - f(baseline), the method's own measure of its error. Special tokens are left out:
the baseline keeps them, so integrated gradients gives them nothing.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from textclf.data.tokenization import FULL
from textclf.data.windows import cut_windows, special_tokens
from textclf.errors import SettingError
from textclf.inference.attribution import METHODS, Rows, attribute, pad_rows
from textclf.inference.predictor import Predictor, autocast_to, label_names
from textclf.inference.settings import (
    ALL,
    BASELINES,
    EXPLAIN_PRECISIONS,
    INTEGRATED_GRADIENTS,
    OCCLUSION,
    PREDICTED,
)
from textclf.inference.token_spans import TokenSpans, token_spans
from textclf.model.trained import TrainedClassifier
from textclf.precision import resolve_precision
from textclf.schema import is_whole

CAPTUM_MISSING = "explanations need captum: pip install 'textclf[explain]'"
# integrated gradients' interpolation steps (Gauss-Legendre): in fp32 the attributions of most texts sum to
# within 1 % of f(text) - f(baseline) at 64, not at 32 (docs/explain.md#completeness)
N_STEPS = 64
# fp32: bf16 autocast is ~1.25x faster on a CPU with AVX512-BF16 but loses completeness (docs/explain.md#speed)
PRECISION = "32-true"
# rows (texts or windows, times interpolation steps) per forward and backward pass
BATCH_SIZE = 256


def is_positive(value: Any) -> bool:
    return is_whole(value) and value >= 1


def check_method(method: str, n_steps: int) -> None:
    """A `SettingError` naming the method or step count that cannot be."""
    if method not in METHODS:
        raise SettingError(f"method='{method}' is not an attribution method ({', '.join(METHODS)})")
    if not is_positive(n_steps):
        raise SettingError(f"n_steps must be a positive integer, not {n_steps!r}")


def check_settings(method: str, n_steps: int, batch_size: int, baseline: str, precision: str) -> None:
    """A `SettingError` naming the first setting of an explainer that cannot be."""
    check_method(method, n_steps)
    if baseline not in BASELINES:
        raise SettingError(f"baseline='{baseline}' must be one of {', '.join(BASELINES)}")
    if precision not in EXPLAIN_PRECISIONS:
        allowed = ", ".join(EXPLAIN_PRECISIONS)
        raise SettingError(f"precision='{precision}' must be one of {allowed} for explanations")
    if not is_positive(batch_size):
        raise SettingError(f"batch_size must be a positive integer, not {batch_size!r}")


def target_indices(target: str, model: TrainedClassifier, probabilities: np.ndarray) -> list[list[int]]:
    """The labels to explain for each text: the predicted class (`predicted`; multi-label: each label at or
    above its threshold, or the most probable where none is), one named label, or every label (`all`)."""
    names = list(model.id2label.values())
    if model.task.regression:
        if target not in (PREDICTED, ALL, names[0]):
            raise SettingError(f"target='{target}': a regression model explains its score: use {PREDICTED}")
        return [[0] for _ in probabilities]
    if target == ALL:
        return [list(range(len(names))) for _ in probabilities]
    if target == PREDICTED:
        chosen = model.task.decisions(torch.from_numpy(probabilities)).numpy()
        return [[int(i) for i in np.flatnonzero(row)] or [int(p.argmax())] for row, p in zip(chosen, probabilities)]
    if target not in names:
        raise SettingError(
            f"target='{target}' is not a label of this model ({', '.join(names)}; or {PREDICTED}, {ALL})"
        )
    return [[names.index(target)] for _ in probabilities]


@dataclass
class Example:
    """One text and one label of it to explain: its rows (the whole text, or each of its windows) as token
    positions in the text."""

    text: int
    target: int
    windows: list[np.ndarray]

    @property
    def tokens(self) -> int:
        return sum(len(window) for window in self.windows)


class Explainer:
    """Attributions for a trained classifier: tokenized as it was trained (truncation, pairs, windows), the
    examples sorted by length and batched `batch_size` rows × interpolation steps per pass, under bf16
    autocast where the hardware is fast at it (the order of tokens by attribution stays: docs/explain.md)."""

    def __init__(
        self,
        model: TrainedClassifier,
        method: str = INTEGRATED_GRADIENTS,
        n_steps: int = N_STEPS,
        batch_size: int = BATCH_SIZE,
        baseline: str = "pad",
        precision: str = PRECISION,
        device: str = "auto",
    ) -> None:
        try:
            import captum  # noqa: F401
        except ImportError:
            raise SettingError(CAPTUM_MISSING) from None
        check_settings(method, n_steps, batch_size, baseline, precision)
        self.predictor = Predictor(model, batch_size=64, precision="32-true", device=device)
        self.model, self.method, self.n_steps, self.batch_size = self.predictor.model, method, n_steps, batch_size
        tokenizer = self.predictor.tokenizer
        self.baseline_id = tokenizer.pad_token_id if baseline == "pad" else tokenizer.mask_token_id
        self.pad_id = tokenizer.pad_token_id
        if self.baseline_id is None:
            raise SettingError(f"baseline={baseline}: this model's tokenizer has no {baseline} token")
        autocast = resolve_precision("auto") if precision == "auto" else precision
        self.autocast = torch.bfloat16 if autocast == "bf16-mixed" else None

    def using(self, method: str, n_steps: int) -> Explainer:
        """This explainer with another method and step count, sharing its model, tokenizer and device: a
        server takes them per request without loading the model again."""
        check_method(method, n_steps)
        other = copy.copy(self)
        other.method, other.n_steps = method, n_steps
        return other

    @property
    def windows(self) -> bool:
        return self.predictor.long_texts == "window"

    def spans(self, texts: list[str], pairs: list[str] | None) -> list[TokenSpans]:
        p = self.predictor
        truncation = FULL if self.windows else p.truncation
        return token_spans(texts, p.tokenizer, p.max_length, truncation, pairs, p.pair_truncation)

    def windows_of(self, spans: TokenSpans) -> list[np.ndarray]:
        """The token positions of each row: the whole text, or its windows as prediction cuts them."""
        positions = np.arange(len(spans.ids))
        if not self.windows or len(positions) <= self.predictor.max_length:
            return [positions]
        if self.method == OCCLUSION:
            raise SettingError(
                f"method=occlusion replaces one token at a time and is for texts within max_length "
                f"({self.predictor.max_length} tokens); use integrated_gradients for long texts in windows"
            )
        prefix, suffix = special_tokens(self.predictor.tokenizer)
        flat, offsets, _ = cut_windows(
            positions,
            np.array([0, len(positions)]),
            self.predictor.max_length,
            self.predictor.window_stride,
            prefix,
            suffix,
        )
        return [flat[offsets[i] : offsets[i + 1]].astype(np.int64) for i in range(len(offsets) - 1)]

    def batches(self, examples: list[Example]) -> list[list[int]]:
        """Examples longest first, grouped so that each pass takes about `batch_size` rows × steps."""
        steps = self.n_steps if self.method == INTEGRATED_GRADIENTS else 1
        order = sorted(range(len(examples)), key=lambda index: -examples[index].tokens)
        batches, batch, rows = [], [], 0
        for index in order:
            size = len(examples[index].windows)
            if batch and (rows + size) * steps > self.batch_size:
                batches.append(batch)
                batch, rows = [], 0
            batch.append(index)
            rows += size
        return batches + ([batch] if batch else [])

    def attributions(
        self, examples: list[Example], spans: list[TokenSpans], pairs: bool, progress: Callable[[int], None] | None
    ) -> tuple[list[np.ndarray], list[float | None]]:
        """Each example's attribution per token of its whole text, and its completeness delta (or None)."""
        found: list[np.ndarray] = [np.zeros(len(spans[one.text].ids)) for one in examples]
        deltas: list[float | None] = [None] * len(examples)
        remaining = Counter(one.text for one in examples)
        self.model.eval()
        with autocast_to(self.predictor.device, self.autocast):
            for batch in self.batches(examples):
                rows = rows_of([examples[index] for index in batch], spans, pairs, self.baseline_id, self.pad_id)
                scores, change = attribute(
                    self.model,
                    rows,
                    self.method,
                    self.n_steps,
                    self.batch_size,
                    self.predictor.window_aggregation,
                    self.predictor.device,
                )
                stitch(batch, rows, scores.numpy(), change, found, deltas)
                if progress is not None:  # the texts whose every target is now explained
                    for index in batch:
                        remaining[examples[index].text] -= 1
                    progress(sum(remaining[text] == 0 for text in {examples[index].text for index in batch}))
        return found, deltas

    def explain(
        self,
        texts: Sequence[str],
        pairs: Sequence[str] | None = None,
        target: str = PREDICTED,
        progress: Callable[[int], None] | None = None,
    ) -> list[dict[str, Any]]:
        """One record per text, in the order of `texts` (see the module's docstring); `progress(texts)` is
        called as batches finish."""
        texts, pairs = list(texts), None if pairs is None else list(pairs)
        self.predictor.check_pairs(pairs)
        probabilities = self.predictor.predict_proba(texts, pairs=pairs)
        chosen = target_indices(target, self.model, probabilities)
        spans = self.spans(texts, pairs)
        examples = [
            Example(text, label, self.windows_of(spans[text])) for text, labels in enumerate(chosen) for label in labels
        ]
        found, deltas = self.attributions(examples, spans, pairs is not None, progress)
        several = self.model.task.multi_label or (target == ALL and not self.model.task.regression)
        explained = [dict[str, Any]() for _ in texts]
        names = self.model.id2label
        for example, scores, delta in zip(examples, found, deltas):
            keep = spans[example.text].segments >= 0
            explained[example.text][names[example.target]] = (significant(scores[keep]), delta)
        labels = label_names(self.model.task, names, probabilities)
        return [
            record_of(
                self,
                text,
                pairs[index] if pairs else None,
                labels[index],
                probabilities[index],
                spans[index],
                explained[index],
                several,
            )
            for index, text in enumerate(texts)
        ]


def rows_of(examples: list[Example], spans: list[TokenSpans], pairs: bool, baseline_id: int, pad_id: int) -> Rows:
    """The padded rows of a batch of examples; the baseline keeps the special tokens ([CLS], [SEP])."""
    ids, baselines, positions, firsts, example, targets = [], [], [], [], [], []
    for number, one in enumerate(examples):
        text = spans[one.text]
        for window in one.windows:
            ids.append(text.ids[window])
            special = text.segments[window] < 0
            baselines.append(np.where(special, text.ids[window], baseline_id))
            positions.append(window)
            firsts.append(text.first_segment)
            example.append(number)
            targets.append(one.target)
    return pad_rows(ids, baselines, positions, firsts if pairs else None, example, targets, pad_id)


def stitch(
    batch: list[int],
    rows: Rows,
    scores: np.ndarray,
    change: torch.Tensor | None,
    found: list[np.ndarray],
    deltas: list[float | None],
) -> None:
    """Adds each row's attributions into its example's whole-text array (the windows of a long text
    overlap: a token's is the sum over the windows that hold it)."""
    for row, number in enumerate(rows.example.tolist()):
        valid = rows.positions[row] >= 0
        np.add.at(found[batch[number]], rows.positions[row][valid], scores[row][valid])
    if change is not None:
        for number, index in enumerate(batch):
            total = float(change[rows.example == number].sum())
            deltas[index] = float(found[index].sum()) - total


def significant(values: Any, digits: int = 5) -> list[float]:
    """Numbers to `digits` significant digits: short JSON, and small attributions keep their precision."""
    return [float(f"{value:.{digits}g}") for value in values]


def record_of(
    explainer: Explainer,
    text: str,
    pair: str | None,
    label: Any,
    probabilities: np.ndarray,
    spans: TokenSpans,
    explained: dict[str, tuple[list[float], float | None]],
    several: bool,
) -> dict[str, Any]:
    """The JSON-ready record of one text: its prediction, tokens, spans and attributions per target."""
    model = explainer.model
    record: dict[str, Any] = {"text": text} | ({"text_pair": pair} if pair is not None else {})
    if model.task.regression:
        record["score"] = label
    else:
        record["label"] = label
        record["probabilities"] = {name: round(float(p), 6) for name, p in zip(model.id2label.values(), probabilities)}
    keep = spans.segments >= 0
    record["method"] = explainer.method
    record["tokens"] = explainer.predictor.tokenizer.convert_ids_to_tokens(spans.ids[keep].tolist())
    record["offsets"] = spans.spans[keep].tolist()
    if pair is not None:
        record["segment"] = spans.segments[keep].tolist()
    delta = {name: None if d is None else significant([d])[0] for name, (_, d) in explained.items()}
    if several:
        record |= {"target": list(explained), "attributions": {name: a for name, (a, _) in explained.items()}}
        record["completeness_delta"] = delta
    else:
        ((name, (attributions, _)),) = explained.items()
        record |= {"target": name, "attributions": attributions, "completeness_delta": delta[name]}
    return record


def explain_texts(
    trained: TrainedClassifier,
    texts: Sequence[str],
    text_pairs: Sequence[str] | None = None,
    *,
    target: str = PREDICTED,
    method: str = INTEGRATED_GRADIENTS,
    n_steps: int = N_STEPS,
    batch_size: int = BATCH_SIZE,
    baseline: str = "pad",
    precision: str = PRECISION,
    device: str = "auto",
) -> list[dict[str, Any]]:
    """Token attributions of `trained` (`textclf.load_trained(path)`) for `texts` (and, for a pair model,
    the second text of each): one JSON-serialisable record per text, in order. `target`: `predicted` (the
    default), a label's name, or `all`; `method`: integrated_gradients (default), gradient_x_input or
    occlusion. Errors in the settings are `textclf.SettingError`s with a one-line message."""
    explainer = Explainer(trained, method, n_steps, batch_size, baseline, precision, device)
    return explainer.explain(texts, text_pairs, target)
