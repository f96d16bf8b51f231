"""LoRA through the peft library: low-rank adapters on the attention projections of a frozen encoder, so
that a base-size or larger encoder fine-tunes with a fraction of the trained weights and optimizer state.

The adapters are put into the model in place (`inject_adapter_in_model`): module names stay as they are,
so the speed-ups, checkpoints and exports see the same model, with `lora_A`/`lora_B` weights added.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from textclf.model.settings import PEFT_METHODS

# rank, scaling numerator, dropout on the adapters' input; target_modules null: peft's default for the
# architecture (BERT: query and value; DistilBERT: q_lin and v_lin; DeBERTa-v2: query_proj and value_proj; ...)
LORA_DEFAULTS = {"r": 8, "alpha": 16, "dropout": 0.1, "target_modules": None}


def lora_settings(peft: str | None, lora: Mapping[str, Any]) -> dict[str, Any] | None:
    """The LoRA settings in force (None without `peft=lora`), checked."""
    if peft not in PEFT_METHODS:
        raise ValueError(f"model.net.peft must be null or lora, not '{peft}'")
    if peft is None:
        return None
    unknown = set(lora) - set(LORA_DEFAULTS)
    if unknown:
        raise ValueError(f"model.net.lora: unknown setting {sorted(unknown)[0]} (settings: {', '.join(LORA_DEFAULTS)})")
    return LORA_DEFAULTS | dict(lora)


def add_lora(model: nn.Module, settings: dict[str, Any], trains_in_full: Callable[[str], bool]) -> list[str]:
    """Adapters on `model`'s target modules; every other weight frozen, except those `trains_in_full`
    names (a native classification head). Returns the names of the modules adapted."""
    try:
        from peft import LoraConfig, inject_adapter_in_model
    except ImportError:
        raise ValueError("model.net.peft=lora needs the peft library: pip install 'textclf[lora]'") from None

    config = LoraConfig(
        r=settings["r"],
        lora_alpha=settings["alpha"],
        lora_dropout=settings["dropout"],
        target_modules=settings["target_modules"],
    )
    inject_adapter_in_model(config, model)
    for name, parameter in model.named_parameters():
        parameter.requires_grad_("lora_" in name or trains_in_full(name))
    from peft.tuners.lora import LoraLayer

    return sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules() if isinstance(module, LoraLayer)})


def merge_lora(model: nn.Module) -> nn.Module:
    """The adapters folded into the weights they adapt, and the plain layers back in their place: a model
    without peft, as `transformers` saves and loads it."""
    if not any("lora_" in name for name, _ in model.named_parameters()):
        return model
    from peft.tuners.lora import LoraLayer

    for name, module in list(model.named_modules()):
        if isinstance(module, LoraLayer):
            module.merge()
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, child, module.get_base_layer())
    return model
