"""The schema of conf/model (`textclf.schema`): the network under `model.net` (encoder, head, speed-ups,
LoRA) and the training settings under `model`; the choices' one home (network, speed-ups, LoRA and tasks
read them from here), and the model settings that contradict the data's. Light: no torch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textclf.data.settings import TASKS
from textclf.pretrained import pretrained_problem
from textclf.schema import (
    FRACTION,
    POSITIVE,
    Rule,
    contradiction,
    is_number,
    number,
    one_of,
    register,
    selected,
    setting,
)

HEADS = ("native", "pooler", "cls", "mean")
FROZEN_EMBEDDINGS = ("none", "word", "all")
ATTENTION_IMPLEMENTATIONS = ("auto", "sdpa", "eager", "flash_attention_2")
PEFT_METHODS = (None, "lora")
REGRESSION_LOSSES = ("mse", "huber")
TUNED = "tuned"  # model.threshold=tuned: one threshold per label, tuned on validation (calibration.py)
DROPOUT = number(0, 1, high_open=True, optional=True)


@dataclass
class LoraSettings:
    """`model.net.lora`: the adapters' rank, scaling, dropout and the modules they adapt."""

    r: int = setting(POSITIVE)
    alpha: float = setting(number(0, low_open=True))
    dropout: float = setting(FRACTION)
    target_modules: Any = setting()


@dataclass
class NetSettings:
    """`model.net`: what `textclf.model.network.build_network` takes."""

    _target_: str = setting()
    _convert_: str = setting()
    pretrained: str = setting()
    head: str = setting(one_of(HEADS))
    normalize: bool = setting()
    dropout: float | None = setting(DROPOUT)
    attention_dropout: float | None = setting(DROPOUT)
    hidden_dropout: float | None = setting(DROPOUT)
    freeze_embeddings: str = setting(one_of(FROZEN_EMBEDDINGS))
    fast_dropout: bool = setting()
    skip_unused_tokens: bool = setting()
    bf16_residual: bool = setting()
    attn_implementation: str = setting(one_of(ATTENTION_IMPLEMENTATIONS))
    gradient_checkpointing: bool = setting()
    peft: str | None = setting(one_of(PEFT_METHODS[1:], optional=True))
    lora: LoraSettings = setting()
    trust_remote_code: bool = setting()


def is_threshold(value: Any) -> bool:
    return value == TUNED or (is_number(value) and 0 < value < 1)


def is_class_weights(value: Any) -> bool:
    return value == "balanced" or (isinstance(value, list) and all(is_number(w) and w >= 0 for w in value) and value)


@dataclass
class PartialSettings:
    """`model.scheduler`: a function the LightningModule calls with the rest of its arguments
    (`_partial_`); another one's own arguments are added with `+model.scheduler.…`."""

    _target_: str = setting()
    _partial_: bool = setting()


@dataclass
class OptimizerSettings(PartialSettings):
    """`model.optimizer`: AdamW by default; `fused` (null: torch's choice) where the optimizer has it."""

    fused: bool | None = setting()


@dataclass
class ModelSettings:
    """conf/model: the LightningModule's settings (loss, metrics, optimization) and the network under `net`."""

    _target_: str = setting()
    net: NetSettings = setting()
    lr: float = setting(number(0, low_open=True))
    weight_decay: float = setting(number(0))
    warmup_fraction: float = setting(number(0, 1))
    multi_label: bool = setting()
    task: str = setting(one_of(TASKS))
    regression_loss: str = setting(one_of(REGRESSION_LOSSES))
    threshold: Any = setting(Rule("a number in (0, 1), or tuned", is_threshold, wrong="not allowed"))
    calibrate: bool = setting()
    class_weights: Any = setting(
        Rule("balanced, or a list of one weight ≥ 0 per label, or null", is_class_weights, "not allowed", True)
    )
    compile: bool = setting()
    optimizer: OptimizerSettings = setting()
    scheduler: PartialSettings = setting()


register("model", ModelSettings)


@contradiction
def model_task_is_the_data_task(cfg: Any) -> str | None:
    """`model.task` and `model.multi_label` follow the data's (`${data.task}`): set apart, they contradict it."""
    for key in ("task", "multi_label"):
        model, data = selected(cfg, f"model.{key}"), selected(cfg, f"data.{key}")
        if model is not None and data is not None and model != data:
            return (
                f"model.{key}: {model} contradicts data.{key}={data} (set data.{key}={model}; model.{key} follows it)"
            )
    return None


@contradiction
def task_settings_for_another_task(cfg: Any) -> str | None:
    """Thresholds tuned per label need several labels; calibration and a regression loss need their task."""
    task, multi_label = selected(cfg, "data.task"), selected(cfg, "data.multi_label")
    if selected(cfg, "model.threshold") == TUNED and multi_label is False:
        return "model.threshold: tuned tunes one threshold per label, data.multi_label=false (set it true, or 0.5)"
    if selected(cfg, "model.calibrate") is True and task == "regression":
        return "model.calibrate: true scales class probabilities, data.task=regression has none (false)"
    loss = selected(cfg, "model.regression_loss")
    if loss not in (None, "mse") and task == "classification":
        return f"model.regression_loss: {loss} is for data.task=regression, not classification (mse)"
    if selected(cfg, "model.class_weights") is not None and task == "regression":
        return "model.class_weights: weights classes, data.task=regression has none (null)"
    return None


@contradiction
def pretrained_that_cannot_load(cfg: Any) -> str | None:
    """`model.net.pretrained` and `data.tokenizer` (where it differs) that cannot be loaded, found before
    anything is imported or read."""
    model, tokenizer = selected(cfg, "model.net.pretrained"), selected(cfg, "data.tokenizer")
    if model is not None and (problem := pretrained_problem(model)):
        return f"model.net.pretrained: {problem}"
    if tokenizer is not None and (problem := pretrained_problem(tokenizer, "tokenizer")):
        return f"data.tokenizer: {problem}"
    return None
