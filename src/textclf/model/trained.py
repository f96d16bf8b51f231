"""A trained classifier for inference: the network with what using it needs, without the LightningModule.

`checkpoints.load_trained` returns one. `textclf-predict`, `textclf-eval` and `textclf-export` work on it, so
they never import Lightning (docs/performance.md: a one-line prediction). It has the attributes of the LightningModule
(`module.ClassifierLitModule`) that inference reads, so the `Predictor` takes either.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from textclf.model.network import ClassifierNetwork
from textclf.model.tasks import SingleLabel, task_of


class TrainedClassifier(nn.Module):
    """`net` with its labels and settings (`hparams`, the LightningModule's hyper-parameters as saved), the
    task they define with the fitted temperature and thresholds, the tokenizer and the data settings it was
    trained with (`data_hparams`)."""

    def __init__(
        self,
        net: ClassifierNetwork,
        hparams: dict[str, Any],
        data_hparams: dict[str, Any],
        tokenizer: PreTrainedTokenizerBase | None,
    ) -> None:
        super().__init__()
        self.net, self.tokenizer = net, tokenizer
        self.hparams, self.data_hparams = hparams, data_hparams
        self.id2label = {int(index): str(name) for index, name in hparams["id2label"].items()}
        self.task: SingleLabel = task_of(hparams)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logits, one row per text (or pair of texts)."""
        return self.net(input_ids, attention_mask, token_type_ids)
