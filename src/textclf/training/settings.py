"""The schemas of `textclf-train`'s config (`textclf.schema`): its own keys (train.yaml), the Trainer's keys
that textclf's configs set (conf/trainer, debug, memory, mixed_precision) and textclf's callbacks. Light:
no Lightning. A Trainer argument or a callback the configs do not name is added with `+trainer.…` or
`+callbacks.…`, unchecked here: Lightning checks it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textclf.schema import (
    POSITIVE,
    PROBABILITY,
    Rule,
    contradiction,
    either,
    is_number,
    is_whole,
    number,
    one_of,
    register,
    selected,
    setting,
    whole,
)

# auto (textclf's: bf16 where fast) and what Lightning 2 takes
PRECISIONS = (
    "auto",
    *("bf16-mixed", "16-mixed", "bf16-true", "16-true", "32-true", "64-true", "bf16", "16", "32", "64", 16, 32, 64),
    *("transformer-engine", "transformer-engine-float16"),
)
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu", "hpu")
WHEN = ("auto", "always", "never")  # callbacks.progress_log.enabled
# sweep.pruner (Optuna's pruners, textclf.training.pruning)
PRUNERS = ("none", "median", "successive_halving", "hyperband")
MODES = ("max", "min")
# strategy.name: auto picks contrastive up to strategy.contrastive_up_to training examples per class
STRATEGIES = ("auto", "finetune", "contrastive")
PAIR_LOSSES = ("cosine", "contrastive")  # textclf.model.contrastive
POOLINGS = ("mean", "cls")
# a share of the batches (a fraction up to 1.0) or a count of them (a whole number)
BATCHES = either("a fraction in [0, 1] of the batches, or a whole number of them", PROBABILITY, whole(0))


def is_devices(value: Any) -> bool:
    return value == "auto" or (is_whole(value) and (value >= 1 or value == -1)) or isinstance(value, list)


@dataclass
class TrainerSettings:
    """conf/trainer: the `lightning.pytorch.Trainer` arguments textclf's configs set."""

    _target_: str = setting()
    default_root_dir: str = setting()
    min_epochs: int = setting(whole(0))
    max_epochs: int = setting(whole(-1, note="-1: no limit"))
    accelerator: str = setting(one_of(ACCELERATORS))
    devices: Any = setting(
        Rule("a whole number ≥ 1, -1 (all), auto, or a list of device ids", is_devices, "not allowed")
    )
    num_nodes: int = setting(POSITIVE)
    strategy: Any = setting()
    precision: Any = setting(one_of(PRECISIONS))
    check_val_every_n_epoch: int | None = setting(whole(1, optional=True))
    val_check_interval: Any = setting(
        either("a fraction in (0, 1] of an epoch, or a whole number of steps", number(0, 1, low_open=True), whole(1))
    )
    log_every_n_steps: int = setting(POSITIVE)
    num_sanity_val_steps: int = setting(whole(-1, note="-1: all"))
    deterministic: Any = setting(one_of((True, False, "warn")))
    use_distributed_sampler: bool = setting()
    limit_train_batches: Any = setting(BATCHES)
    limit_val_batches: Any = setting(BATCHES)
    limit_test_batches: Any = setting(BATCHES)
    fast_dev_run: Any = setting(either("true, false or a whole number of batches", one_of((True, False)), whole(1)))
    overfit_batches: Any = setting(BATCHES)
    accumulate_grad_batches: int = setting(POSITIVE)


@dataclass
class ModelCheckpointSettings:
    _target_: str = setting()
    dirpath: str = setting()
    filename: str = setting()
    auto_insert_metric_name: bool = setting()
    monitor: str = setting()
    mode: str = setting(one_of(MODES))
    save_top_k: int = setting(whole(-1, note="-1: all"))
    save_weights_only: bool = setting()


@dataclass
class LastCheckpointSettings:
    _target_: str = setting()
    dirpath: str = setting()
    every_n_train_steps: int = setting(whole(0, note="0: only after validations"))


@dataclass
class EarlyStoppingSettings:
    _target_: str = setting()
    monitor: str = setting()
    mode: str = setting(one_of(MODES))
    patience: int = setting(whole(0))


@dataclass
class ProgressLogSettings:
    _target_: str = setting()
    every_n_steps: int = setting(POSITIVE)
    enabled: str = setting(one_of(WHEN))


@dataclass
class LearningRateMonitorSettings:
    _target_: str = setting()
    logging_interval: str | None = setting(one_of(("step", "epoch"), optional=True))


@dataclass
class ModelSummarySettings:
    _target_: str = setting()
    max_depth: int = setting(whole(-1, note="-1: every layer"))


@dataclass
class CallbackSettings:
    """A callback that takes no settings here."""

    _target_: str = setting()


@dataclass
class TestReportSettings:
    _target_: str = setting()
    max_examples: int = setting(whole(0))
    explain_misclassified: int = setting(whole(0, note="0: no misclassified.html"))


@dataclass
class CallbacksSettings:
    """conf/callbacks/default.yaml: textclf's callbacks and the Lightning ones it configures (null: off)."""

    model_checkpoint: ModelCheckpointSettings | None = setting()
    last_checkpoint: LastCheckpointSettings | None = setting()
    early_stopping: EarlyStoppingSettings | None = setting()
    learning_rate_monitor: LearningRateMonitorSettings | None = setting()
    model_summary: ModelSummarySettings | None = setting()
    progress_bar: CallbackSettings | None = setting()
    progress_log: ProgressLogSettings | None = setting()
    confusion_matrix: CallbackSettings | None = setting()
    predicted_vs_true: CallbackSettings | None = setting()
    test_report: TestReportSettings | None = setting()


@dataclass
class CrossValidationSettings:
    folds: int | None = setting(whole(2, optional=True, note="no cross-validation"))
    save_embeddings: bool = setting()


@dataclass
class StrategySettings:
    """conf/strategy: how the classifier is trained, and the contrastive strategy's knobs."""

    name: str = setting(one_of(STRATEGIES))
    contrastive_up_to: int = setting(whole(1, unit="training examples per class"))
    num_iterations: int = setting(POSITIVE)
    batch_size: int = setting(POSITIVE)
    body_lr: float = setting(number(0, low_open=True))
    body_epochs: int = setting(POSITIVE)
    warmup_fraction: float = setting(number(0, 1, high_open=True))
    loss: str = setting(one_of(PAIR_LOSSES))
    pooling: str = setting(one_of(POOLINGS))
    normalize: bool = setting()
    head_c: float = setting(number(0, low_open=True))
    head_max_iter: int = setting(POSITIVE)


@dataclass
class TrainSettings:
    """conf/train.yaml: `textclf-train`'s own keys; the groups have schemas of their own."""

    task_name: str = setting()
    seed: int = setting()
    test: bool = setting()
    resume: str | None = setting()
    ckpt_path: str | None = setting()
    cv: CrossValidationSettings = setting()
    optimized_metric: str = setting()
    run_group: str | None = setting()
    log_export: bool = setting()
    data: Any = setting()
    model: Any = setting()
    strategy: StrategySettings = setting()
    trainer: Any = setting()
    paths: Any = setting()
    callbacks: Any = setting(factory=dict)
    logger: Any = setting(factory=dict)


register("train", TrainSettings)
register("trainer", TrainerSettings)
register("strategy", StrategySettings)
register("callbacks", CallbacksSettings)


@contradiction
def fewer_epochs_than_the_least(cfg: Any) -> str | None:
    least, most = selected(cfg, "trainer.min_epochs"), selected(cfg, "trainer.max_epochs")
    if is_number(least) and is_number(most) and most != -1 and least > most:
        return f"trainer.min_epochs: {least} is more than trainer.max_epochs={most} (at most max_epochs)"
    return None
