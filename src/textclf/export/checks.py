"""What every export is checked with: a few probe texts run through the checkpoint and through the exported
model, whose logits must agree within a tolerance."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from textclf.data.tokenization import uses_token_types
from textclf.errors import CheckpointError
from textclf.model.trained import TrainedClassifier

PROBE_TEXTS = [
    "a short one",
    "a somewhat longer text to check that padding and masks agree with each other",
    "",
    "UPPER case, punctuation!? and numbers 1234",
]


TOLERANCE = 1e-4


def reads_token_types(model: TrainedClassifier) -> bool:
    """A model of text pairs whose tokenizer marks the second text with token type ids: its exports take them."""
    return model.data_hparams.get("text_pair_column") is not None and uses_token_types(model.tokenizer)


def probe_batch(model: TrainedClassifier, texts: list[str] = PROBE_TEXTS, tensors: str = "pt") -> dict[str, Any]:
    """The tokenizer's encoding of probe texts, or of probe pairs (each text with the next) for a pair model."""
    pairs = texts[1:] + texts[:1] if model.data_hparams.get("text_pair_column") is not None else None
    return dict(
        model.tokenizer(
            texts, pairs, padding=True, return_tensors=tensors, return_token_type_ids=reads_token_types(model)
        )
    )


def reference_logits(model: TrainedClassifier, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """What the export must output: the logits, or a regression model's scores on the targets' scale."""
    with torch.inference_mode():
        return model.task.outputs(model(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids")))


def check_close(actual: torch.Tensor | np.ndarray, expected: torch.Tensor, what: str) -> None:
    difference = float((torch.as_tensor(actual) - expected).abs().max())
    if difference > TOLERANCE:
        raise CheckpointError(
            f"{what} differs from the checkpoint by {difference:.2e} (> {TOLERANCE}); nothing written"
        )
