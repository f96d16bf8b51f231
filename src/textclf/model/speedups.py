"""Changes to a Hugging Face encoder that make it faster and keep what it learns: each one is measured in
docs/performance.md and can be switched off in `conf/model/default.yaml` (`model.net.*`). `apply` is the one
place where they are put on an encoder."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.models.bert.modeling_bert import eager_attention_forward


class FastDropout(nn.Module):
    """Dropout with a mask from 16-bit slices of 64-bit random draws: 4 elements per generator call
    instead of 1. On CPU, `bernoulli_` was a quarter of a MiniLM training step; this is 3x cheaper.
    The keep probability is exact to 1/65536."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        count = x.numel()
        draws = torch.randint(-(2**63), 2**63 - 1, ((count + 3) // 4,), dtype=torch.int64, device=x.device)
        # the comparison writes the mask as 1.0 / 0.0 in x's dtype: a bool mask cast to bf16 took 5x longer
        keep = torch.ge(
            draws.view(torch.int16)[:count].view(x.shape), round(self.p * 65536) - 32768, out=torch.empty_like(x)
        )
        return x * keep * (1 / (1 - self.p))

    def extra_repr(self) -> str:
        return f"p={self.p}"


def use_fast_dropout(module: nn.Module) -> None:
    """Swap every nn.Dropout inside `module` for FastDropout (CPU only: CUDA's own dropout is fused)."""
    for name, child in module.named_children():
        if isinstance(child, nn.Dropout):
            setattr(module, name, FastDropout(child.p))
        else:
            use_fast_dropout(child)


def resolve_attention(implementation: str, training: bool, supports_sdpa: bool = True) -> str:
    """`auto`: PyTorch's SDPA, except for training on a CPU, where SDPA's kernels made a MiniLM training
    step slower than the eager path (for inference on the CPU SDPA is the faster one: docs/performance.md),
    and for architectures without an SDPA path (DeBERTa-v2, MPNet, ...), which run eager."""
    if implementation != "auto":
        return implementation
    return "eager" if (training and not torch.cuda.is_available()) or not supports_sdpa else "sdpa"


# Encoders whose layers are BERT's (self-attention with query/key/value, intermediate, output), with
# absolute positions and an embedding block whose output starts the residual stream: the speed-ups that
# rewrite layers or the residual stream are exact for these, as the tests check architecture by
# architecture (tests/test_architectures.py); elsewhere they are skipped.
BERT_STYLE = frozenset({"bert", "roberta", "xlm-roberta", "camembert", "electra", "data2vec-text", "ernie"})


def native_head_reads_first_token(config: Any) -> bool:
    """Whether the architecture's own classification head reads only the last layer's first token ([CLS],
    <s>): true of the BERT-style encoders (DistilBERT's, DeBERTa's and others' heads do too, but their
    layers take no first-token speed-up, so they are not listed)."""
    return config.model_type in BERT_STYLE


class FirstTokenLayer(nn.Module):
    """The last layer of a BERT-style encoder, computed for the first token only.

    Pooling over [CLS] (`pooler`, `cls`) reads one position of the last layer: its keys and values still
    need every token, but its query, attention output and feed-forward block (two thirds of the layer's
    work) need only the first. The result for that token is the same to float rounding, and the
    submodules keep their names, so checkpoints and exports are unchanged.
    """

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.attention, self.intermediate, self.output = layer.attention, layer.intermediate, layer.output

    def forward(
        self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None, *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        attention = self.attention.self
        batch = hidden_states.shape[0]
        first = hidden_states[:, :1]

        def heads(states: torch.Tensor) -> torch.Tensor:
            return states.view(batch, states.shape[1], -1, attention.attention_head_size).transpose(1, 2)

        if attention_mask is not None and attention_mask.dim() == 4:  # [batch, 1, queries or 1, keys]
            attention_mask = attention_mask[:, :, :1]  # the first query's row (flash attention's 2-D mask fits)
        attend = ALL_ATTENTION_FUNCTIONS.get_interface(attention.config._attn_implementation, eager_attention_forward)
        context, _ = attend(
            attention,
            heads(attention.query(first)),
            heads(attention.key(hidden_states)),
            heads(attention.value(hidden_states)),
            attention_mask,
            dropout=attention.dropout.p if attention.training else 0.0,
            scaling=attention.scaling,
        )
        attended = self.attention.output(context.reshape(batch, 1, -1), first)
        return self.output(self.intermediate(attended), attended)


def keep_residual_in_bf16(encoder: nn.Module) -> bool:
    """Under bf16 autocast, make the embeddings' output bf16, so the residual stream, layer norms and
    attention mask that follow stay bf16 (weights stay fp32). Autocast alone leaves them fp32 and
    casts them again before every matrix product: a sixth of a CPU training step was such copies."""
    embeddings = getattr(encoder, "embeddings", None)
    if encoder.config.model_type not in BERT_STYLE or not isinstance(embeddings, nn.Module):
        return False
    embeddings.register_forward_hook(cast_output_to_bf16_under_autocast)
    return True


def cast_output_to_bf16_under_autocast(module: nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor | None:
    device = output.device.type
    if torch.is_autocast_enabled(device) and torch.get_autocast_dtype(device) == torch.bfloat16:
        return output.to(torch.bfloat16)
    return None


def first_token_last_layer(encoder: nn.Module) -> bool:
    """Swap the encoder's last layer for a FirstTokenLayer, if it is a BERT-style self-attention layer
    (BERT, RoBERTa, XLM-R, ELECTRA, MiniLM, ...); other architectures are left as they are."""
    config = encoder.config
    layers = getattr(getattr(encoder, "encoder", None), "layer", None)
    if (
        config.model_type not in BERT_STYLE
        or not isinstance(layers, nn.ModuleList)
        or config.is_decoder
        or getattr(config, "position_embedding_type", "absolute") != "absolute"
    ):
        return False
    last = layers[-1]
    attention = getattr(getattr(last, "attention", None), "self", None)
    if not all(
        hasattr(attention, name) for name in ("query", "key", "value", "attention_head_size", "scaling")
    ) or not all(hasattr(last, name) for name in ("intermediate", "output")):
        return False
    layers[-1] = FirstTokenLayer(last)
    return True


# what of the embedding block stays as pretrained: nothing, the word matrix (half of MiniLM's weights), or
# all of it (also position and token-type embeddings and their LayerNorm: then layer 0 needs no input gradient)


def freeze_embeddings(encoder: nn.Module, which: str) -> bool:
    """Keep the embedding block (`all`) or the word matrix (`word`) as pretrained: no gradient, no update."""
    if which == "word":
        encoder.get_input_embeddings().weight.requires_grad_(False)
    elif which == "all":
        embeddings = getattr(encoder, "embeddings", None) or encoder.get_input_embeddings()
        embeddings.requires_grad_(False)
    return which != "none"


def apply(
    encoder: nn.Module,
    *,
    reads_first_token_only: bool,
    skip_unused_tokens: bool,
    bf16_residual: bool,
    frozen_embeddings: str,
) -> list[str]:
    """Put the chosen speed-ups on `encoder`, each where it fits; return the names of those applied.
    (Fast dropout is applied when training starts, on a CPU only: `use_fast_dropout`.)"""
    applied = []
    if skip_unused_tokens and reads_first_token_only and first_token_last_layer(encoder):
        applied.append("skip_unused_tokens")
    if bf16_residual and keep_residual_in_bf16(encoder):
        applied.append("bf16_residual")
    if freeze_embeddings(encoder, frozen_embeddings):
        applied.append(f"freeze_embeddings={frozen_embeddings}")
    return applied
