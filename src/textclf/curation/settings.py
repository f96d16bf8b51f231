"""The schemas of `textclf-audit` (audit.yaml: textclf-train's settings and its own) and `textclf-select`
(select.yaml) (`textclf.schema`), and the one home of their choices. Light: no torch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textclf.inference.settings import CHECKPOINT, DEVICE, PRECISIONS, TEXTS
from textclf.schema import POSITIVE, PROBABILITY, one_of, register, setting
from textclf.training.settings import TrainSettings

# cleanlab.filter.find_label_issues' filter_by
LABEL_FILTERS = ("prune_by_noise_rate", "prune_by_class", "both", "confident_learning", "predicted_neq_given")
STRATEGIES = ("diverse", "margin", "entropy", "least_confidence", "random")


@dataclass
class AuditOptions:
    filter_by: str = setting(one_of(LABEL_FILTERS))
    duplicate_overlap: float = setting(PROBABILITY)
    top: int = setting(POSITIVE)


@dataclass
class AuditSettings(TrainSettings):
    """conf/audit.yaml: textclf-train's keys, a finished run to read instead (`run_dir`), and `audit`."""

    run_dir: str | None = setting()
    audit: AuditOptions = setting()


@dataclass
class SelectSettings:
    """conf/select.yaml."""

    task_name: str = setting()
    ckpt_path: str = setting(CHECKPOINT)
    input: str = setting(TEXTS)
    output: str = setting()
    text_column: str = setting()
    text_pair_column: str | None = setting()
    k: int = setting(POSITIVE)
    strategy: str = setting(one_of(STRATEGIES))
    candidates: int = setting(POSITIVE)
    skip_known: bool = setting()
    exclude_file: str | None = setting()
    seed: int = setting()
    chunk_size: int = setting(POSITIVE)
    batch_size: int = setting(POSITIVE)
    precision: str = setting(one_of(PRECISIONS))
    device: str = setting(DEVICE)
    paths: Any = setting()


register("audit", AuditSettings)
register("select", SelectSettings)
