"""The classifier network: input ids and attention mask in, logits out.

By default it is the architecture's own `AutoModelForSequenceClassification` (head `native`: BERT's pooler,
DistilBERT's pre-classifier, DeBERTa's context pooler, ...), the recipe users know from the Hugging Face
Trainer, exported as it is. textclf's own heads put a pooled representation (`pooler`: the encoder's
pooler over [CLS]; `cls`: the raw [CLS] state; `mean`: the mean token state) under dropout + linear.
One factory, `build_network`, builds either, applies the speed-ups that fit the architecture, and the
memory levers (LoRA, gradient checkpointing). The LightningModule (`training/lit_module.py`) receives the network.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
import transformers
from torch import nn
from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, PreTrainedModel
from transformers.models.auto.modeling_auto import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING, MODEL_MAPPING

from textclf.errors import SettingError, first_line
from textclf.log import log
from textclf.model import speedups
from textclf.model.lora import LORA_DEFAULTS, add_lora, lora_settings
from textclf.model.settings import FROZEN_EMBEDDINGS, HEADS
from textclf.pretrained import resolve_pretrained

# the config keys through which architectures set their dropout: on attention probabilities, on hidden
# states, and in their classification head (BERT's names first, then DistilBERT's, ALBERT's, ...)
ATTENTION_DROPOUT_KEYS = ("attention_probs_dropout_prob", "attention_dropout")
HIDDEN_DROPOUT_KEYS = ("hidden_dropout_prob", "dropout")
HEAD_DROPOUT_KEYS = ("classifier_dropout", "seq_classif_dropout", "classifier_dropout_prob")
# architectures that read their head's dropout from a config key they do not declare
UNDECLARED_HEAD_DROPOUT = {"deberta": "cls_dropout", "deberta-v2": "cls_dropout"}


class ClassifierNetwork(nn.Module):
    """What every head shares: the attention implementation that is fastest for training or inference,
    and `spec`, the arguments of `build_network` that rebuild the network (with the model's config
    instead of its weights), so that a checkpoint alone rebuilds it without a download."""

    def __init__(self, spec: dict[str, Any], supports_sdpa: bool) -> None:
        super().__init__()
        self.spec, self.supports_sdpa = spec, supports_sdpa
        self.active_attention = speedups.resolve_attention(spec["attn_implementation"], True, supports_sdpa)

    encoder: PreTrainedModel  # the transformer without its head

    @property
    def head_kind(self) -> str:
        return self.spec["head"]

    @property
    def normalize(self) -> bool:
        return self.spec["normalize"]

    @property
    def fast_dropout(self) -> bool:
        return self.spec["fast_dropout"]

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logits; `token_type_ids` tell the texts of a pair apart (None: one text, all type 0)."""
        attention = speedups.resolve_attention(self.spec["attn_implementation"], self.training, self.supports_sdpa)
        if attention != self.active_attention:  # the faster attention differs between training and inference
            self.encoder.set_attn_implementation(attention)
            self.active_attention = attention
        return self.logits(input_ids, attention_mask, token_type_ids)

    def logits(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None
    ) -> torch.Tensor:
        raise NotImplementedError


class NativeNetwork(ClassifierNetwork):
    """The architecture's own sequence-classification model."""

    def __init__(self, model: nn.Module, **options: Any) -> None:
        super().__init__(**options)
        self.model = model

    @property
    def encoder(self) -> PreTrainedModel:
        return self.model.base_model

    def logits(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None
    ) -> torch.Tensor:
        types = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        return self.model(input_ids=input_ids, attention_mask=attention_mask, **types).logits


class PooledNetwork(ClassifierNetwork):
    """An encoder, a pooled representation and a dropout + linear head."""

    def __init__(self, encoder: PreTrainedModel, num_labels: int, dropout: float, **options: Any) -> None:
        super().__init__(**options)
        self.encoder = encoder
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(encoder.config.hidden_size, num_labels))

    def pooled(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The representation the head reads (also what the contrastive strategy trains: model/contrastive.py),
        scaled to unit length with `normalize`, as a sentence-transformer's last module does."""
        types = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        outputs = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **types)
        if self.head_kind == "pooler":
            pooled = outputs.pooler_output
        elif self.head_kind == "cls":
            pooled = outputs.last_hidden_state[:, 0]
        else:
            pooled = mean_pooled(outputs.last_hidden_state, attention_mask)
        return F.normalize(pooled, dim=-1) if self.normalize else pooled

    def logits(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None
    ) -> torch.Tensor:
        return self.head(self.pooled(input_ids, attention_mask, token_type_ids))


def mean_pooled(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The mean of the token states where the attention mask is 1 (sentence-transformers' pooling)."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)


def set_dropout(
    config: Any, head: str, dropout: float | None, attention_dropout: float | None, hidden_dropout: float | None
) -> None:
    """The dropout settings that are not null, on the config keys the architecture has for them."""
    for value, keys in (
        (attention_dropout, ATTENTION_DROPOUT_KEYS),
        (hidden_dropout, HIDDEN_DROPOUT_KEYS),
        (dropout if head == "native" else None, HEAD_DROPOUT_KEYS),
    ):
        key = next((key for key in keys if hasattr(config, key)), None)
        if value is not None and key is not None:
            setattr(config, key, value)
    if head == "native" and dropout is not None and config.model_type in UNDECLARED_HEAD_DROPOUT:
        setattr(config, UNDECLARED_HEAD_DROPOUT[config.model_type], dropout)


def load_model(
    config: Any, head: str, location: str | None, attention: str, trust_remote_code: bool
) -> tuple[PreTrainedModel, set[str]]:
    """The pretrained weights from `location`, or (None) the architecture alone for a checkpoint to fill:
    the sequence-classification model for the native head, else the bare encoder. Also the names of the
    weights that the pretrained ones did not provide (a new head, or one for another number of labels)."""
    auto = AutoModelForSequenceClassification if head == "native" else AutoModel
    # fp32 parameters whatever dtype the weights were saved in: transformers 5 keeps a model saved in bf16
    # in bf16 (its config's dtype), and mixed precision would then train and update bf16 weights
    if location is None:
        return auto.from_config(config, attn_implementation=attention, dtype=torch.float32), set()
    # read into memory, not memory-mapped: the first optimizer step writes every trained weight, and
    # copy-on-write of a mapped file made that step slower (docs/pitfalls.md)
    model, loading = auto.from_pretrained(
        location,
        config=config,
        dtype=torch.float32,
        attn_implementation=attention,
        trust_remote_code=trust_remote_code,
        disable_mmap=True,
        output_loading_info=True,
        ignore_mismatched_sizes=True,  # a classifier pretrained for another number of labels gets a new head
    )
    new = set(loading["missing_keys"]) | {key for key, *_ in loading["mismatched_keys"]}
    initialise_new_layers(model, new)
    return model, new


def initialise_new_layers(model: nn.Module, missing: set[str]) -> None:
    """The linear layers that the pretrained weights do not have (a new classification head) get PyTorch's
    default initialisation instead of transformers' N(0, 0.02): in short fine-tuning runs the small head
    learned markedly slower (docs/performance.md, "Heads"). A head that comes with the weights is kept."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and f"{name}.weight" in missing:
            module.reset_parameters()


def model_class(config: Any, head: str) -> type | None:
    """The transformers class of the network's model; None for code that comes with a hub model."""
    found = (MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING if head == "native" else MODEL_MAPPING).get(type(config), None)
    if found is None and not getattr(config, "auto_map", None):
        kind = "sequence-classification model" if head == "native" else "model"
        raise ValueError(
            f"model.net.head={head}: transformers has no {kind} for '{config.model_type}'"
            + ("; use cls or mean" if head == "native" else "")
        )
    return found


def build_network(
    num_labels: int,
    pretrained: str = "all-MiniLM-L6-v2",
    head: str = "native",
    normalize: bool = False,
    dropout: float | None = 0.1,
    attention_dropout: float | None = 0.0,
    hidden_dropout: float | None = None,
    freeze_embeddings: str = "all",
    fast_dropout: bool = True,
    skip_unused_tokens: bool = True,
    bf16_residual: bool = True,
    attn_implementation: str = "auto",
    gradient_checkpointing: bool = False,
    peft: str | None = None,
    lora: Mapping[str, Any] = LORA_DEFAULTS,
    trust_remote_code: bool = False,
    model_config: dict[str, Any] | None = None,
) -> ClassifierNetwork:
    """The pretrained model with a head for `num_labels` (or, with `model_config`, the architecture only,
    for a checkpoint to fill), with the speed-ups that fit it. Defaults are those of
    `conf/model/default.yaml` (`model.net`)."""
    pretrained = str(pretrained)  # a Path would not load from a checkpoint with weights_only
    spec = dict(locals())  # the arguments, kept with the network to rebuild it
    check_choices(head, freeze_embeddings, normalize)
    lora = lora_settings(peft, lora)
    # a LoRA checkpoint holds only what was trained: the frozen base comes from `pretrained`
    location = resolve_pretrained(pretrained) if model_config is None or lora is not None else None
    config = load_config(location, model_config, num_labels, trust_remote_code)
    if location is not None:
        set_dropout(config, head, dropout, attention_dropout, hidden_dropout)
    supports_sdpa = getattr(model_class(config, head), "_supports_sdpa", False)
    model, new_weights = load_model(
        config, head, location, speedups.resolve_attention(attn_implementation, True, supports_sdpa), trust_remote_code
    )
    encoder = encoder_of(model, head, pretrained)
    # transformers 5 returns from_pretrained models in eval mode (dropout off) and Lightning 2.6 keeps each
    # submodule's mode: switch to train mode or the model would fine-tune without dropout
    model.train()
    applied = apply_speedups(
        encoder,
        config,
        head,
        skip_unused_tokens=skip_unused_tokens,
        bf16_residual=bf16_residual,
        frozen_embeddings=freeze_embeddings,
        gradient_checkpointing=gradient_checkpointing,
    )
    if lora is not None:
        spec["lora"] = add_adapters(model, lora, head, new_weights)
        applied.append(f"lora(r={lora['r']}, {', '.join(spec['lora']['target_modules'])})")
    log.info(f"{config.model_type} with the {head} head; speed-ups: {', '.join(applied) or 'none'}")
    options = {"spec": spec | {"model_config": config.to_dict()}, "supports_sdpa": supports_sdpa}
    if head == "native":
        return NativeNetwork(model, **options)
    own_dropout = getattr(config, "hidden_dropout_prob", 0.1)
    return PooledNetwork(model, num_labels, own_dropout if dropout is None else dropout, **options)


def check_choices(head: str, freeze_embeddings: str, normalize: bool) -> None:
    """The settings that name one of a few choices, checked before anything is downloaded or loaded."""
    if head not in HEADS:
        raise ValueError(f"model.net.head must be one of {', '.join(HEADS)}, not '{head}'")
    if normalize and head == "native":
        raise ValueError(
            "model.net.normalize=true: the native head pools inside the architecture; use mean, cls or pooler"
        )
    if freeze_embeddings not in FROZEN_EMBEDDINGS:
        raise ValueError(
            f"model.net.freeze_embeddings must be one of {', '.join(FROZEN_EMBEDDINGS)}, not '{freeze_embeddings}'"
        )


def load_config(
    location: str | None, model_config: dict[str, Any] | None, num_labels: int, trust_remote_code: bool
) -> Any:
    """The architecture's config: the pretrained one at `location` with a head for `num_labels`, or (None)
    the one a checkpoint carries, `model_config`."""
    if location is None:
        return AutoConfig.for_model(**model_config)
    try:
        return AutoConfig.from_pretrained(location, trust_remote_code=trust_remote_code, num_labels=num_labels)
    except (OSError, ValueError, KeyError) as error:
        raise SettingError(f"model.net.pretrained: {unloadable(location, error)}") from None


def unloadable(location: str, error: BaseException) -> str:
    """Why transformers could not read a model's config, in a line: an architecture it does not know (a
    newer model than this transformers), or what it said."""
    kind = re.search(r"model type `([^`]+)`", str(error))
    if kind:
        return (
            f"{location} is a '{kind.group(1)}' model, an architecture transformers {transformers.__version__} "
            "cannot build (upgrade transformers, or choose another model)"
        )
    return f"{location}: {first_line(error)}"


def encoder_of(model: PreTrainedModel, head: str, pretrained: str) -> PreTrainedModel:
    """The transformer under the head: the native model's base model, else the model itself, whose own
    pooler is dropped unless the `pooler` head reads it (unused parameters would break DDP)."""
    if head == "native":
        return model.base_model
    if head == "pooler" and getattr(model, "pooler", None) is None:
        raise ValueError(f"model.net.head=pooler: '{pretrained}' has no pooler; use native, cls or mean")
    if head != "pooler" and getattr(model, "pooler", None) is not None:
        model.pooler = None
    return model


def apply_speedups(
    encoder: PreTrainedModel,
    config: Any,
    head: str,
    *,
    skip_unused_tokens: bool,
    bf16_residual: bool,
    frozen_embeddings: str,
    gradient_checkpointing: bool,
) -> list[str]:
    """The chosen speed-ups on the encoder, each where it fits the architecture and head, then gradient
    checkpointing if asked; returns the names of those applied, for the log."""
    reads_first_token = head in ("pooler", "cls") or (
        head == "native" and speedups.native_head_reads_first_token(config)
    )
    applied = speedups.apply(
        encoder,
        reads_first_token_only=reads_first_token,
        skip_unused_tokens=skip_unused_tokens,
        bf16_residual=bf16_residual,
        frozen_embeddings=frozen_embeddings,
    )
    if gradient_checkpointing:
        encoder.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        applied.append("gradient_checkpointing")
    return applied


def add_adapters(model: PreTrainedModel, lora: dict[str, Any], head: str, new_weights: set[str]) -> dict[str, Any]:
    """LoRA adapters on the encoder, frozen but for them; the native head, and any weights the pretrained
    ones lacked (so that checkpoints, which keep what trains, keep them), train in full. Returns the LoRA
    settings with the modules peft chose, for the spec: another peft version may choose others for the
    same architecture."""
    prefix = f"{model.base_model_prefix}."

    def trains_in_full(name: str) -> bool:
        return name in new_weights or (head == "native" and not name.startswith(prefix))

    return lora | {"target_modules": add_lora(model, lora, trains_in_full)}
