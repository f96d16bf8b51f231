"""`export(cfg)`, behind `textclf-export`: a checkpoint as a Hugging Face model directory or an ONNX graph.

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

from omegaconf import DictConfig

from textclf.atomic import os_error_reason
from textclf.errors import CheckpointError, OutputError
from textclf.export import model_card
from textclf.export.hf import to_hf
from textclf.export.onnx import to_onnx
from textclf.log import log
from textclf.model.loading import load_trained


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
