"""The Hugging Face export: a model directory `AutoModelForSequenceClassification` and `pipeline` load as
they are, with the tokenizer, the labels and any calibration folded into the last layer."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    PreTrainedModel,
)

from textclf.errors import CheckpointError
from textclf.export.checks import check_close, probe_batch, reference_logits
from textclf.model.network import model_class
from textclf.model.trained import TrainedClassifier


def save_tokenizer(model: TrainedClassifier, directory: Path) -> None:
    """The tokenizer, with the checkpoint's `max_length` as its `model_max_length` and its truncation side,
    so that `pipeline(..., truncation=True)` cuts long texts where textclf did (`head_tail` has no
    tokenizer setting: such texts are cut at the head)."""
    tokenizer = model.tokenizer
    if model.data_hparams.get("max_length"):
        tokenizer.model_max_length = model.data_hparams["max_length"]
    tokenizer.truncation_side = "left" if model.data_hparams.get("truncation") == "tail" else "right"
    tokenizer.save_pretrained(directory)


def hf_model(model: TrainedClassifier) -> PreTrainedModel:
    """The checkpoint's network as a plain `AutoModelForSequenceClassification` with the same weights:
    the native head as it is (LoRA adapters are merged when the checkpoint loads), or the `pooler` head where
    the architecture's own head is exactly pooler + dropout + linear (BERT)."""
    net = model.net
    config = AutoConfig.for_model(**net.spec["model_config"])
    if net.normalize and net.head_kind == "pooler":
        raise CheckpointError(
            "format=hf: a head over unit-length embeddings (model.net.normalize) has no Hugging Face model class; "
            "use format=onnx"
        )
    if net.head_kind == "native":
        state = net.model.state_dict()
    elif net.head_kind == "pooler":
        config.classifier_dropout = net.spec["dropout"]
        prefix = model_class(config, "native").base_model_prefix
        state = {f"{prefix}.{name}": value for name, value in net.encoder.state_dict().items()}
        state |= {"classifier.weight": net.head[1].weight, "classifier.bias": net.head[1].bias}
    else:
        raise CheckpointError(
            f"format=hf: the {net.head_kind} head has no Hugging Face model class (the native and "
            "pooler heads have); use format=onnx"
        )
    config.num_labels = len(model.id2label)
    config.id2label = dict(model.id2label)
    config.label2id = {name: index for index, name in model.id2label.items()}
    config.problem_type = (
        "regression"
        if model.task.regression
        else "multi_label_classification"
        if model.task.multi_label
        else "single_label_classification"
    )
    if model.task.regression:  # the head outputs the score itself, not its standardized value
        state = dict(state) | rescaled_output_layer(state, model.task.std, model.task.mean)
    elif model.task.temperature != 1.0:  # calibrated: the head outputs logits / temperature
        state = dict(state) | rescaled_output_layer(state, 1 / model.task.temperature, 0.0, len(model.id2label))
    if model.task.multi_label:  # pipeline itself applies 0.5; these are textclf's decisions
        config.textclf_thresholds = [round(float(t), 6) for t in model.task.thresholds]
    exported = AutoModelForSequenceClassification.from_config(config, dtype=torch.float32)  # as the checkpoint
    missing, unexpected = exported.load_state_dict(state, strict=False)
    missing = [name for name in missing if not name.endswith("position_ids")]
    if missing or unexpected:
        raise CheckpointError(
            f"format=hf: {type(exported).__name__} does not take this network's weights "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]}); use format=onnx"
        )
    return exported.eval()


def rescaled_output_layer(
    state: dict[str, torch.Tensor], scale: float, shift: float, outputs: int = 1
) -> dict[str, torch.Tensor]:
    """The last linear layer (the last weight of `outputs` rows, and its bias) with its outputs scaled and
    shifted inside it: (w x + b) * scale + shift = (scale w) x + (scale b + shift). Regression undoes the
    standardization (scale std, shift mean); a calibrated classifier divides by its temperature."""
    weight = next(
        name
        for name in reversed(state)
        if name.endswith(".weight") and state[name].ndim == 2 and state[name].shape[0] == outputs
    )
    bias = weight.removesuffix("weight") + "bias"
    return {weight: state[weight] * scale, bias: state[bias] * scale + shift}


def to_hf(model: TrainedClassifier, directory: Path) -> None:
    """A Hugging Face model directory that `pipeline("text-classification")` loads, checked against the
    checkpoint's own logits."""
    batch = probe_batch(model)
    expected = reference_logits(model, batch)
    exported = hf_model(model)
    with torch.inference_mode():
        check_close(exported(**batch).logits, expected, "the Hugging Face export")
    exported.save_pretrained(directory)
    save_tokenizer(model, directory)
