"""The ONNX export: the classifier traced with plain tensor inputs and logits out, checked with
onnxruntime against the checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from textclf.errors import SettingError
from textclf.export.checks import PROBE_TEXTS, check_close, probe_batch, reads_token_types, reference_logits
from textclf.export.hf import save_tokenizer
from textclf.model.trained import TrainedClassifier


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
