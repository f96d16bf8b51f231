"""The schema of `textclf-export` (export.yaml, `textclf.schema`). Light: no torch, no onnx."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textclf.schema import Rule, one_of, register, setting, whole

FORMATS = ("hf", "onnx")


@dataclass
class ExportSettings:
    """conf/export.yaml."""

    task_name: str = setting()
    ckpt_path: str = setting(Rule("a checkpoint file", lambda value: isinstance(value, str)))
    format: str = setting(one_of(FORMATS))
    output_dir: str = setting()
    opset: int = setting(whole(9, note="the ONNX opset"))
    paths: Any = setting()


register("export", ExportSettings)
