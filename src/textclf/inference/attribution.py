"""Token attributions with captum, batched: many rows (texts, or the windows of long texts) and all of
integrated gradients' interpolation steps go through one forward and backward pass.

Attributions are taken at the word embeddings (captum's layer methods), so positions and token types stay
as they are and the input and the baseline differ only in the words. What is explained is what a user sees:
a class's probability (softmax, or a multi-label sigmoid, of the temperature-scaled logits) or a regression
score in its own scale; so the attributions of a text sum, for integrated gradients, to the change of that
number from the baseline to the text. A text cut into windows is one function of all its windows (their
logits aggregated as in prediction): each row returns its text's value divided by the text's row count, so
the gradient reaching a token is the sum over the windows that hold it, and the stitched attributions are
integrated gradients of the whole text.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from textclf.data.windows import aggregate
from textclf.inference.settings import EXPLAIN_METHODS, GRADIENT_X_INPUT, INTEGRATED_GRADIENTS
from textclf.model.trained import TrainedClassifier

METHODS = EXPLAIN_METHODS


@dataclass
class Rows:
    """A batch of rows to attribute, padded: each row a text (or one window of it) with the example (a text
    and one target) it belongs to, and where its positions sit in that example's whole token sequence."""

    input_ids: torch.Tensor  # [rows, length]
    baseline_ids: torch.Tensor
    attention_mask: torch.Tensor
    token_type_ids: torch.Tensor | None
    example: torch.Tensor  # [rows]: the example of each row, 0 … examples - 1
    targets: list[int]  # per row: the class its example explains
    positions: np.ndarray  # [rows, length]: the token index in the example's text, -1 for padding
    examples: int


def pad_rows(
    ids: list[np.ndarray],
    baselines: list[np.ndarray],
    positions: list[np.ndarray],
    firsts: list[int] | None,
    example: list[int],
    targets: list[int],
    pad_id: int,
    multiple: int = 8,
) -> Rows:
    """`Rows` from each row's ids, baseline ids, token positions and (pairs) first-segment length."""
    longest = -(-max(len(row) for row in ids) // multiple) * multiple
    input_ids = np.full((len(ids), longest), pad_id, dtype=np.int64)
    baseline_ids, where = input_ids.copy(), np.full((len(ids), longest), -1, dtype=np.int64)
    for row, (token_ids, baseline, position) in enumerate(zip(ids, baselines, positions)):
        input_ids[row, : len(token_ids)], baseline_ids[row, : len(token_ids)] = token_ids, baseline
        where[row, : len(token_ids)] = position
    mask = torch.from_numpy(where >= 0).long()
    types = None
    if firsts is not None:
        types = (torch.arange(longest)[None, :] >= torch.tensor(firsts)[:, None]).long() * mask
    return Rows(
        torch.from_numpy(input_ids),
        torch.from_numpy(baseline_ids),
        mask,
        types,
        torch.tensor(example),
        targets,
        where,
        max(example) + 1,
    )


def row_scores(model: TrainedClassifier, rows: Rows, aggregation: str) -> Callable[..., torch.Tensor]:
    """The forward function captum differentiates: ids (repeated for each interpolation step, step after
    step, as captum lays them out) to each row's share of its example's probabilities or scores."""
    count = torch.bincount(rows.example, minlength=rows.examples).float()
    windowed = len(rows.example) > rows.examples  # some example spans several rows

    def scores(input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None):
        logits = model(input_ids, attention_mask, token_type_ids)
        if not windowed:
            return model.task.probabilities(logits)
        steps = len(input_ids) // len(rows.example)
        example = rows.example.to(logits.device)
        group = (torch.arange(len(input_ids), device=logits.device) // len(example)) * rows.examples
        group = group + example.repeat(steps)
        per_example = model.task.probabilities(aggregate(logits.float(), group, steps * rows.examples, aggregation))
        return per_example[group] / count.to(logits.device)[example.repeat(steps)][:, None]

    return scores


def attribute(
    model: TrainedClassifier,
    rows: Rows,
    method: str,
    n_steps: int,
    batch_size: int,
    aggregation: str,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per row and position, the attribution to the row's target [rows, length] (fp32, on the CPU); and, for
    integrated gradients, each row's share of f(text) - f(baseline) [rows], for the completeness check."""
    from captum.attr import LayerFeatureAblation, LayerGradientXActivation, LayerIntegratedGradients

    scores = row_scores(model, rows, aggregation)
    layer = model.net.encoder.get_input_embeddings()
    ids, baseline = rows.input_ids.to(device), rows.baseline_ids.to(device)
    extra = (rows.attention_mask.to(device), None if rows.token_type_ids is None else rows.token_type_ids.to(device))
    with warnings.catch_warnings():  # captum's notice when a long text has more windows than batch_size rows
        warnings.simplefilter("ignore", UserWarning)
        if method == INTEGRATED_GRADIENTS:
            found = LayerIntegratedGradients(scores, layer).attribute(
                ids, baseline, rows.targets, extra, n_steps=n_steps, internal_batch_size=batch_size
            )
        elif method == GRADIENT_X_INPUT:
            gradient = LayerGradientXActivation(scores, layer, multiply_by_inputs=False)  # the bare gradient
            found = gradient.attribute(ids, rows.targets, extra) * embedding_difference(layer, ids, baseline)
        else:
            found = occlusion(LayerFeatureAblation(scores, layer), model, rows, ids, baseline, extra)
    attributions = found.detach().float().sum(-1).cpu()
    if method != INTEGRATED_GRADIENTS:
        return attributions, None
    with torch.no_grad():
        targets = torch.tensor(rows.targets, device=device)[:, None]
        change = scores(ids, *extra).gather(1, targets) - scores(baseline, *extra).gather(1, targets)
    return attributions, change.float().squeeze(1).cpu()


def embedding_difference(layer: torch.nn.Module, ids: torch.Tensor, baseline: torch.Tensor) -> torch.Tensor:
    """The text's word embeddings minus the baseline's [rows, length, hidden]: what gradient × input
    multiplies the gradient at the text by. Gradient × (input − baseline) is integrated gradients with one
    right-Riemann step (the gradient at alpha = 1 times the difference; captum's Riemann rules take two steps
    or more), the first-order term of f(text) − f(baseline); the special tokens, which the baseline keeps,
    get nothing, as with integrated gradients."""
    with torch.no_grad():
        return layer(ids) - layer(baseline)


def occlusion(
    ablation,  # noqa: ANN001 (captum's LayerFeatureAblation)
    model: TrainedClassifier,
    rows: Rows,
    ids: torch.Tensor,
    baseline: torch.Tensor,
    extra: tuple,
) -> torch.Tensor:
    """f(text) - f(text with one token replaced by its baseline token), for each position: one forward pass
    of the batch's rows per position (captum's perturbations_per_eval > 1 refuses per-row targets). The
    difference is spread evenly over the hidden units, so that summing them gives it back."""
    layer = model.net.encoder.get_input_embeddings()
    with torch.no_grad():
        baseline_embeddings = layer(baseline)
    hidden = baseline_embeddings.shape[-1]
    mask = torch.arange(ids.shape[1], device=ids.device)[None, :, None].expand(len(ids), -1, 1)
    found = ablation.attribute(
        ids,
        layer_baselines=baseline_embeddings,
        target=rows.targets,
        additional_forward_args=extra,
        layer_mask=mask,
    )
    return found.expand(-1, -1, hidden) / hidden if found.shape[-1] == 1 else found / hidden
