"""The schemas of `textclf-predict` (predict.yaml), `textclf-explain` (explain.yaml) and `textclf-eval`
(eval.yaml) (`textclf.schema`), and the inference precisions', explanation methods' and baselines' one home.
Light: no torch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textclf.data.settings import AGGREGATIONS, MIN_LENGTH, TRUNCATIONS
from textclf.schema import POSITIVE, Rule, one_of, register, setting, whole

PRECISIONS = ("auto", "bf16-mixed", "16-mixed", "bf16-true", "16-true", "32-true")
SPLITS = ("train", "val", "test")
OUTPUTS = ("csv", "jsonl")
INTEGRATED_GRADIENTS, GRADIENT_X_INPUT, OCCLUSION = "integrated_gradients", "gradient_x_input", "occlusion"
EXPLAIN_METHODS = (INTEGRATED_GRADIENTS, GRADIENT_X_INPUT, OCCLUSION)
# what an explanation explains, besides one label by its name: the prediction (multi-label: each label over
# its threshold) or every label
PREDICTED, ALL = "predicted", "all"
EXPLAIN_TARGETS = (PREDICTED, ALL)
# the baseline's words: [PAD] (the default, as transformers-interpret and captum's tutorials use it) or [MASK]
BASELINES = ("pad", "mask")
EXPLAIN_PRECISIONS = ("auto", "bf16-mixed", "32-true")
EXPLAIN_OUTPUTS = ("jsonl", "html")


def is_device(value: Any) -> bool:
    kinds = ("auto", "cpu", "cuda", "mps")
    return isinstance(value, str) and (value in kinds or (value.startswith("cuda:") and value[5:].isdigit()))


def is_output(value: Any) -> bool:
    return value == "-" or (isinstance(value, str) and Path(value).suffix.lower().lstrip(".") in OUTPUTS)


DEVICE = Rule("auto, cpu, cuda, cuda:N or mps", is_device, wrong="not a device")
CHECKPOINT = Rule("a checkpoint file", lambda value: isinstance(value, str))
TEXTS = Rule("a text, CSV, TSV, JSONL or Parquet file, or - for standard input", bool)


def is_explanation_output(value: Any) -> bool:
    return value == "-" or (isinstance(value, str) and Path(value).suffix.lower().lstrip(".") in EXPLAIN_OUTPUTS)


@dataclass
class PredictSettings:
    """conf/predict.yaml."""

    task_name: str = setting()
    ckpt_path: str = setting(CHECKPOINT)
    input: str = setting(TEXTS)
    output: str = setting(Rule("a .csv or .jsonl file, or - for standard output", is_output, wrong="not an output"))
    text_column: str = setting()
    text_pair_column: str | None = setting()
    chunk_size: int = setting(POSITIVE)
    batch_size: int = setting(POSITIVE)
    max_length: int | None = setting(whole(MIN_LENGTH, optional=True, note="as trained", unit="tokens"))
    truncation: str | None = setting(one_of(TRUNCATIONS, optional=True))
    window_aggregation: str | None = setting(one_of(AGGREGATIONS, optional=True))
    precision: str = setting(one_of(PRECISIONS))
    device: str = setting(DEVICE)
    quantize: bool = setting()
    paths: Any = setting()


@dataclass
class EvalNetSettings:
    pretrained: str | None = setting()


@dataclass
class EvalModelSettings:
    """eval.yaml `model`: a LoRA checkpoint's base model, if it moved (the rest is in the checkpoint)."""

    net: EvalNetSettings = setting()


@dataclass
class EvalSettings:
    """conf/eval.yaml: its own keys; `data` has the data schema."""

    task_name: str = setting()
    ckpt_path: str = setting(CHECKPOINT)
    split: str = setting(one_of(SPLITS))
    seed: int = setting()
    precision: str = setting(one_of(PRECISIONS))
    device: str = setting(DEVICE)
    explain_misclassified: int = setting(whole(0, note="0: no misclassified.html"))
    model: EvalModelSettings = setting()
    data: Any = setting()
    paths: Any = setting()


@dataclass
class ExplainSettings:
    """conf/explain.yaml."""

    task_name: str = setting()
    ckpt_path: str = setting(CHECKPOINT)
    input: str = setting(TEXTS)
    output: str = setting(
        Rule("a .jsonl or .html file, or - for standard output", is_explanation_output, wrong="not an output")
    )
    text_column: str = setting()
    text_pair_column: str | None = setting()
    target: str = setting(Rule(f"{', '.join(EXPLAIN_TARGETS)}, or one of the model's labels", bool))
    method: str = setting(one_of(EXPLAIN_METHODS))
    n_steps: int = setting(POSITIVE)
    baseline: str = setting(one_of(BASELINES))
    batch_size: int = setting(POSITIVE)
    chunk_size: int = setting(POSITIVE)
    precision: str = setting(one_of(EXPLAIN_PRECISIONS))
    device: str = setting(DEVICE)
    paths: Any = setting()


register("predict", PredictSettings)
register("explain", ExplainSettings)
register("eval", EvalSettings)
