"""`textclf-export`: a checkpoint as a Hugging Face model directory or an ONNX graph.

    textclf-export ckpt_path=CKPT format=hf   output_dir=exported/hf
    textclf-export ckpt_path=CKPT format=onnx output_dir=exported/onnx

`hf` writes `AutoModelForSequenceClassification` weights (safetensors) with `id2label`, the tokenizer and a
`README.md` model card (model_card.py): `transformers.pipeline("text-classification", model=DIR)` loads it.
`onnx` writes `model.onnx` (inputs `input_ids` and `attention_mask`, and `token_type_ids` for a model of text
pairs whose tokenizer has them; output `logits`; dynamic batch and sequence axes) and the tokenizer.
A model of text pairs takes `{"text": ..., "text_pair": ...}` in the pipeline. A regression model's exports
output the score on the targets' scale (`pipeline(..., function_to_apply="none")`). A calibrated model's
exports output logits / temperature (folded into the last linear layer for `hf`); a multi-label model's
thresholds are in `config.textclf_thresholds` and the model card (`pipeline` itself uses 0.5). A model
trained on windows of long texts exports as one window: the export reads a text's first `max_length` tokens.
Each export is checked against the checkpoint's own outputs before it is written in place.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    PreTrainedModel,
)

from textclf import model_card
from textclf.checkpoints import load_trained
from textclf.classifier import TrainedClassifier
from textclf.cli import command_main
from textclf.errors import CheckpointError, OutputError, SettingError
from textclf.files import os_error_reason
from textclf.log import log
from textclf.network import model_class
from textclf.tokenization import uses_token_types

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
    exported = AutoModelForSequenceClassification.from_config(config)
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


class LogitsOnly(nn.Module):
    """The classifier with plain tensor inputs and output, as ONNX wants it."""

    def __init__(self, model: TrainedClassifier) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.model.task.outputs(self.model(input_ids, attention_mask, token_type_ids))


def to_onnx(model: TrainedClassifier, directory: Path, opset: int) -> None:
    try:
        import onnxruntime
    except ImportError:
        raise SettingError("format=onnx needs the export extra: pip install 'textclf[export]'") from None

    batch = probe_batch(model)
    names = ["input_ids", "attention_mask"] + (["token_type_ids"] if reads_token_types(model) else [])
    path = directory / "model.onnx"
    sequence, batch_axis = torch.export.Dim("sequence", max=4096), torch.export.Dim("batch")
    torch.onnx.export(
        LogitsOnly(model).eval(),
        tuple(batch[name] for name in names),
        str(path),
        dynamo=True,
        input_names=names,
        output_names=["logits"],
        opset_version=opset,
        dynamic_shapes={name: {0: batch_axis, 1: sequence} for name in names},
        external_data=False,
    )
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for texts in (PROBE_TEXTS, PROBE_TEXTS[:1]):  # other batch and sequence sizes than the traced ones
        inputs = probe_batch(model, texts, "np")
        (logits,) = session.run(["logits"], {name: value.astype(np.int64) for name, value in inputs.items()})
        check_close(
            logits, reference_logits(model, {k: torch.from_numpy(v) for k, v in inputs.items()}), "the ONNX export"
        )
    save_tokenizer(model, directory)


def export(cfg: DictConfig) -> Path:
    """Export into a temporary folder next to `output_dir`, check it, then move it in place."""
    if cfg.format not in ("hf", "onnx"):
        raise CheckpointError(f"format must be hf or onnx, not '{cfg.format}'")
    model = load_trained(cfg.ckpt_path).float()
    if model.data_hparams.get("long_texts") == "window":
        log.warning(
            f"the model was trained on windows of long texts: its {cfg.format} export reads a text's first "
            f"{model.data_hparams.get('max_length')} tokens only (textclf-predict combines the windows)"
        )
    target = Path(cfg.output_dir)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}.") as staging:
            staging_dir = Path(staging) / "export"
            staging_dir.mkdir()
            if cfg.format == "hf":
                to_hf(model, staging_dir)
                model_card.write(model, cfg.ckpt_path, staging_dir, target.name)
            else:
                to_onnx(model, staging_dir, cfg.opset)
            if target.exists():  # out of the way first (deleted with the staging folder), then the new one in
                target.rename(Path(staging) / "previous")
            staging_dir.rename(target)
    except OSError as error:
        raise OutputError(f"{target}: cannot write the export: {os_error_reason(error, target)}") from None
    log.info(f"exported {cfg.format} to {target}")
    return target


main = command_main(export, "export")

if __name__ == "__main__":
    main()
