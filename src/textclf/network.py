"""The classifier network: a Hugging Face encoder, a pooled representation and a dropout + linear head.

A plain `nn.Module` (what `forward` computes and what exports export), built by one factory,
`build_network`, which also applies the speed-ups. The LightningModule (`module.py`) receives it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModel

from textclf import speedups
from textclf.log import log
from textclf.pretrained import resolve_pretrained

# pooler: the encoder's own pooler over [CLS] (BERT: dense + tanh), the classic BERT recipe and exactly
# what AutoModelForSequenceClassification computes; cls: the raw [CLS] state; mean: the mean token state.
POOLINGS = ("pooler", "cls", "mean")


class ClassifierNetwork(nn.Module):
    """input ids and attention mask -> logits, one row per text.

    `spec` holds the arguments of `build_network` that rebuild it (with the encoder's config instead of
    its weights), so a checkpoint alone rebuilds the network without a download.
    """

    def __init__(
        self,
        encoder: nn.Module,
        num_labels: int,
        pooling: str,
        dropout: float,
        attn_implementation: str,
        fast_dropout: bool,
        spec: dict[str, Any],
    ) -> None:
        super().__init__()
        self.encoder, self.pooling = encoder, pooling
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(encoder.config.hidden_size, num_labels))
        self.attn_implementation, self.fast_dropout, self.spec = attn_implementation, fast_dropout, spec
        self.attention = speedups.resolve_attention(attn_implementation, training=True)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        attention = speedups.resolve_attention(self.attn_implementation, self.training)
        if attention != self.attention:  # the faster attention differs between training and inference
            self.encoder.set_attn_implementation(attention)
            self.attention = attention
        outputs = self.encoder(input_ids=input_ids, attention_mask=attention_mask)
        if self.pooling == "pooler":
            pooled = outputs.pooler_output
        elif self.pooling == "cls":
            pooled = outputs.last_hidden_state[:, 0]
        else:
            hidden = outputs.last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        return self.head(pooled)


def build_network(
    num_labels: int,
    pretrained: str = "all-MiniLM-L6-v2",
    pooling: str = "pooler",
    dropout: float = 0.1,
    attention_dropout: float | None = 0.0,
    hidden_dropout: float | None = None,
    freeze_embeddings: str = "all",
    fast_dropout: bool = True,
    skip_unused_tokens: bool = True,
    bf16_residual: bool = True,
    attn_implementation: str = "auto",
    trust_remote_code: bool = False,
    encoder_config: dict[str, Any] | None = None,
) -> ClassifierNetwork:
    """The pretrained encoder (or, with `encoder_config`, its architecture only, for a checkpoint to fill)
    with a head for `num_labels`, and the speed-ups that fit it. Defaults are those of
    `conf/model/default.yaml` (`model.net`)."""
    spec = dict(locals())  # the arguments, kept with the network to rebuild it
    for key, value, allowed in (
        ("pooling", pooling, POOLINGS),
        ("freeze_embeddings", freeze_embeddings, speedups.FROZEN_EMBEDDINGS),
    ):
        if value not in allowed:
            raise ValueError(f"model.net.{key} must be one of {', '.join(allowed)}, not '{value}'")
    attention = speedups.resolve_attention(attn_implementation, training=True)
    if encoder_config is None:  # a new model: pretrained weights
        location = resolve_pretrained(pretrained)
        config = AutoConfig.from_pretrained(location, trust_remote_code=trust_remote_code)
        for key, value in (
            ("attention_probs_dropout_prob", attention_dropout),
            ("hidden_dropout_prob", hidden_dropout),
        ):
            if value is not None and hasattr(config, key):
                setattr(config, key, value)
        # read into memory, not memory-mapped: every trained weight is written at the first optimizer step,
        # and copy-on-write of a mapped file made that step slower (docs/pitfalls.md)
        encoder = AutoModel.from_pretrained(
            location,
            config=config,
            attn_implementation=attention,
            trust_remote_code=trust_remote_code,
            disable_mmap=True,
        )
        encoder_config = encoder.config.to_dict()
    else:  # from a checkpoint: the architecture only; the weights come from the checkpoint
        encoder = AutoModel.from_config(AutoConfig.for_model(**encoder_config), attn_implementation=attention)
    has_pooler = getattr(encoder, "pooler", None) is not None
    if pooling == "pooler" and not has_pooler:
        raise ValueError(f"model.net.pooling=pooler: '{pretrained}' has no pooler; use cls or mean")
    if pooling != "pooler" and has_pooler:
        encoder.pooler = None  # unused by the head; unused parameters would break DDP
    # transformers 5 returns from_pretrained models in eval mode (dropout off) and Lightning 2.6 keeps each
    # submodule's mode: switch the encoder to train mode or it would fine-tune without dropout
    encoder.train()
    applied = speedups.apply(
        encoder,
        reads_first_token_only=pooling != "mean",
        skip_unused_tokens=skip_unused_tokens,
        bf16_residual=bf16_residual,
        frozen_embeddings=freeze_embeddings,
    )
    log.info(f"speed-ups on the encoder: {', '.join(applied) or 'none'}")
    return ClassifierNetwork(
        encoder,
        num_labels,
        pooling,
        dropout,
        attn_implementation,
        fast_dropout,
        spec | {"encoder_config": encoder_config},
    )
