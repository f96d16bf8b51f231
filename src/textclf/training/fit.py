"""`train(cfg)`, the function behind `textclf-train`: fit, then test the best checkpoint, all composed by
Hydra. A plain function: tests and benchmarks call it in-process on `textclf.config.compose_config`'s config.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

from textclf.atomic import remove_partial_files, write_json_atomically
from textclf.log import log
from textclf.model.tasks import TUNED, check_task_settings
from textclf.precision import resolve_precision
from textclf.run_dirs import resume_checkpoint
from textclf.training import trackers
from textclf.training.calibrate import calibrate_best
from textclf.training.crossval import cross_validate
from textclf.training.resuming import AtomicCheckpointIO, RandomStateCheckpoint, resume_step


def instantiate_group(group: DictConfig | None, **extra: dict[str, Any]) -> list[Any]:
    """Every `_target_` entry of a config group such as `callbacks` or `logger`; `extra[name]` adds
    arguments to the entry called `name`."""
    if not group:
        return []
    return [
        instantiate(entry, **extra.get(name, {}))
        for name, entry in group.items()
        if isinstance(entry, DictConfig) and "_target_" in entry
    ]


def scalars(metrics: dict[str, Any], prefix: str) -> dict[str, float]:
    return {key: float(value) for key, value in sorted(metrics.items()) if key.startswith(prefix)}


HPARAM_METRICS = ("val/acc_best", "test/acc", "test/f1", "val/pearson_best", "test/pearson", "test/spearman")


def log_hparams_with_metrics(trainer: L.Trainer, cfg: DictConfig, metrics: dict[str, float]) -> None:
    """TensorBoard's hparams tab: the settings a sweep varies, next to the run's final metrics (logged
    as hp/* so the metric curves keep one point per step)."""
    settings = {
        f"{group}.{key}": value
        for group in ("model", "data", "trainer")
        for key, value in OmegaConf.to_container(cfg[group], resolve=True).items()
        if isinstance(value, (int, float, str, bool)) and not key.startswith("_")
    }
    settings["seed"] = cfg.seed
    final = {f"hp/{key.replace('/', '_')}": metrics[key] for key in HPARAM_METRICS if key in metrics}
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger) and final:
            logger.log_hyperparams(settings, metrics=final)


def train(cfg: DictConfig, callbacks: Sequence[L.Callback] = ()) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fit the model, test the best checkpoint, write `metrics.json`; return (metrics, objects). With
    `cv.folds=K`, K such runs, one per fold, and their mean (`crossval.py`). `callbacks` join the
    configured ones (a sweep's pruning)."""
    if cfg.get("cv", {}).get("folds"):
        return cross_validate(cfg, lambda fold_cfg: fit_and_test(fold_cfg, callbacks))
    return fit_and_test(cfg, callbacks)


def fit_and_test(cfg: DictConfig, extra_callbacks: Sequence[L.Callback] = ()) -> tuple[dict[str, Any], dict[str, Any]]:
    """One run: fit, test the best checkpoint, write `metrics.json`."""
    model_cfg = cfg.model
    check_task_settings(  # before any work
        model_cfg.get("threshold", 0.5),
        model_cfg.get("calibrate", False),
        cfg.data.get("multi_label", False),
        cfg.data.get("task", "classification"),
        model_cfg.get("regression_loss", "mse"),
    )
    L.seed_everything(cfg.seed, workers=True)
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = cfg.get("ckpt_path") or resume_checkpoint(output_dir, cfg.get("resume"))

    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")  # the label set decides the size of the model's head
    log.info(f"data: {json.dumps(datamodule.describe())}")
    class_weights = cfg.model.get("class_weights")
    if class_weights == "balanced":
        class_weights = datamodule.class_weights()
        log.info(f"class weights from the training label frequencies: {[round(w, 3) for w in class_weights]}")
    # the network is built for the label set; the tokenizer that tokenized the data travels in checkpoints
    scale = {}
    if cfg.data.get("task") == "regression":
        scale = dict(zip(("target_mean", "target_std"), datamodule.target_scale()))
        log.info(f"regression targets standardized by the training mean and std: {scale}")
    model = instantiate(
        cfg.model,
        net={"num_labels": len(datamodule.id2label)},
        id2label=datamodule.id2label,
        class_weights=class_weights,
        tokenizer=datamodule.tokenizer,
        **scale,
    )

    resumed_step = 0
    if ckpt_path:
        resumed_step = resume_step(Path(ckpt_path), model.net.spec)
        removed = remove_partial_files(output_dir / "checkpoints")
        log.info(
            f"resuming from {ckpt_path} at step {resumed_step}"
            + (f" (removed {len(removed)} partly written checkpoint)" if removed else "")
        )
    # TensorBoard hides what the killed run logged after its checkpoint: no step appears twice
    loggers = instantiate_group(cfg.get("logger"), tensorboard={"purge_step": resumed_step} if resumed_step else {})
    callbacks = [*instantiate_group(cfg.get("callbacks")), RandomStateCheckpoint(), *extra_callbacks]
    if not loggers:  # a learning-rate monitor has nowhere to write without a logger
        callbacks = [callback for callback in callbacks if not isinstance(callback, LearningRateMonitor)]
    trainer: L.Trainer = instantiate(
        cfg.trainer,
        callbacks=callbacks,
        logger=loggers or False,
        precision=resolve_precision(cfg.trainer.precision),
        plugins=[AtomicCheckpointIO()],
    )
    # deterministic mode would also fill every new tensor with NaN (to expose reads of uninitialised
    # memory): a cost on every CPU training step (docs/pitfalls.md), and no part of making results repeatable
    torch.utils.deterministic.fill_uninitialized_memory = False
    for logger in trainer.loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

    with warnings.catch_warnings():  # the data module restores the position in the epoch (data.py)
        warnings.filterwarnings("ignore", message=".*your dataloader is not resumable")
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    metrics = scalars(trainer.callback_metrics, "val/")
    best = f"val/{model.task.monitor}_best"
    if best not in metrics and model.val_acc_best.max_value.isfinite():  # resumed after the last
        metrics[best] = float(model.val_acc_best.max_value)  # validation: no new one ran
    best_checkpoint = next((c for c in trainer.checkpoint_callbacks if isinstance(c, ModelCheckpoint)), None)
    best_path = best_checkpoint.best_model_path if best_checkpoint else ""
    if model.hparams.get("calibrate") or model.hparams.get("threshold") == TUNED:
        metrics |= calibrate_best(cfg, trainer, datamodule, model, best_path)

    if cfg.get("test"):
        trainer.test(model, datamodule=datamodule, ckpt_path=best_path or None, weights_only=True)
        metrics |= scalars(trainer.callback_metrics, "test/")

    log_hparams_with_metrics(trainer, cfg, metrics)
    if trainer.is_global_zero:
        write_json_atomically(output_dir / "metrics.json", {**metrics, "best_model_path": best_path})
        if cfg.get("log_export") and best_path:
            trackers.log_export(trainer.loggers, best_path)
    trackers.finish(trainer.loggers)
    return metrics, {"cfg": cfg, "datamodule": datamodule, "model": model, "trainer": trainer}
