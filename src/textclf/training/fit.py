"""`train(cfg)`, the function behind `textclf-train`: fit, then test the best checkpoint, all composed by
Hydra. A plain function: tests and benchmarks call it in-process on `textclf.config.compose_config`'s config.
"""

from __future__ import annotations

import copy
import json
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

from textclf.atomic import remove_partial_files, write_json_atomically
from textclf.config import instantiate_group
from textclf.errors import SettingError
from textclf.log import log
from textclf.model.tasks import TUNED
from textclf.precision import resolve_precision
from textclf.run_dirs import CONTRASTIVE_BEST, resume_checkpoint
from textclf.training import contrastive, trackers
from textclf.training.calibrate import calibrate_best
from textclf.training.crossval import cross_validate
from textclf.training.resuming import AtomicCheckpointIO, RandomStateCheckpoint, holds_best_weights, resume_step

if TYPE_CHECKING:
    from textclf.training.datamodule import TextClassificationDataModule
    from textclf.training.lit_module import ClassifierLitModule


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


def print_lightning_once() -> None:
    """Lightning's package prints its records with a console handler of its own and also hands them on to
    the root logger; where that has handlers (Hydra's console and the run's log file), the root's alone."""
    if logging.getLogger().handlers:
        logging.getLogger("lightning").handlers.clear()


def train(cfg: DictConfig, callbacks: Sequence[L.Callback] = ()) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fit the model, test the best checkpoint, write `metrics.json`; return (metrics, objects). With
    `cv.folds=K`, K such runs, one per fold, and their mean (`crossval.py`). `callbacks` join the
    configured ones (a sweep's pruning)."""
    print_lightning_once()
    if cfg.get("cv", {}).get("folds"):
        return cross_validate(cfg, lambda fold_cfg: fit_and_test(fold_cfg, callbacks))
    return fit_and_test(cfg, callbacks)


def fit_and_test(cfg: DictConfig, extra_callbacks: Sequence[L.Callback] = ()) -> tuple[dict[str, Any], dict[str, Any]]:
    """One run: fit, test the best checkpoint, write `metrics.json`."""
    L.seed_everything(cfg.seed, workers=True)
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = cfg.get("ckpt_path") or resume_checkpoint(output_dir, cfg.get("resume"))
    datamodule, model = data_and_model(cfg)
    if not len(datamodule.datasets["val"]):
        cfg = without_validation(cfg)
    if cfg.strategy.name == "contrastive":  # validated once, at the end: a sweep's pruner has nothing to act on
        trainer = build_trainer(cfg, [], 0)
        contrastive.train_pairs(cfg, model, datamodule, trainer.loggers)
        contrastive.fit_head(cfg, model, datamodule)
        best_path = str(output_dir / "checkpoints" / CONTRASTIVE_BEST)
        metrics = contrastive.save_classifier(trainer, model, datamodule, best_path)
    else:
        resumed_step = prepare_resume(ckpt_path, model, output_dir / "checkpoints")
        trainer = build_trainer(cfg, extra_callbacks, resumed_step)
        metrics = fit_model(trainer, model, datamodule, ckpt_path)
        best_path = best_model_path(trainer)
    metrics |= evaluate_best(cfg, trainer, datamodule, model, best_path)
    write_results(cfg, trainer, metrics, output_dir, best_path)
    return metrics, {"cfg": cfg, "datamodule": datamodule, "model": model, "trainer": trainer}


def data_and_model(cfg: DictConfig) -> tuple[TextClassificationDataModule, ClassifierLitModule]:
    """The data module, set up for fitting, and the model built for its label set (the size of the head),
    its class weights and regression scale; the tokenizer that tokenized the data travels in checkpoints.
    `strategy.name` is settled here (auto: from the training examples per class), with the head it needs."""
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    log.info(f"data: {json.dumps(datamodule.describe())}")
    cfg.strategy.name = contrastive.chosen_strategy(cfg, datamodule)
    if cfg.strategy.name == "contrastive":
        for net_key, strategy_key in (("head", "pooling"), ("normalize", "normalize")):
            if cfg.model.net.get(net_key) != cfg.strategy[strategy_key]:
                log.info(f"model.net.{net_key}={cfg.strategy[strategy_key]}: from strategy.{strategy_key}")
                cfg.model.net[net_key] = cfg.strategy[strategy_key]
    class_weights = cfg.model.get("class_weights")
    if class_weights == "balanced":
        class_weights = datamodule.class_weights()
        log.info(f"class weights from the training label frequencies: {[round(w, 3) for w in class_weights]}")
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
    return datamodule, model


def without_validation(cfg: DictConfig) -> DictConfig:
    """A run with no validation split (data.val_fraction=0 and no validation file): no validation, no early
    stopping, and the checkpoint kept is the last one, which is tested."""
    for key in ("calibrate", "threshold"):
        if cfg.model.get(key) in (True, TUNED):
            raise SettingError(
                f"model.{key}: {cfg.model[key]} is fitted on the validation split; data.val_fraction=0 leaves none"
            )
    log.info("no validation split (data.val_fraction=0): no early stopping; the last weights are tested")
    cfg = copy.deepcopy(cfg)
    cfg.trainer.limit_val_batches = 0
    cfg.trainer.num_sanity_val_steps = 0
    callbacks = cfg.get("callbacks") or {}
    if callbacks.get("early_stopping"):
        callbacks.early_stopping = None
    if callbacks.get("model_checkpoint"):
        callbacks.model_checkpoint.monitor = None
        callbacks.model_checkpoint.filename = "last-epoch{epoch:02d}"
    return cfg


def prepare_resume(ckpt_path: str | Path | None, model: ClassifierLitModule, checkpoint_dir: Path) -> int:
    """The step a resumed run goes on from (0 for a new run), its killed run's partly written checkpoints
    removed: the loggers need the step to drop what was logged after the checkpoint."""
    if not ckpt_path:
        return 0
    resumed_step = resume_step(Path(ckpt_path), model.net.spec)
    removed = remove_partial_files(checkpoint_dir)
    log.info(
        f"resuming from {ckpt_path} at step {resumed_step}"
        + (f" (removed {len(removed)} partly written checkpoint)" if removed else "")
    )
    return resumed_step


def build_trainer(cfg: DictConfig, extra_callbacks: Sequence[L.Callback], resumed_step: int) -> L.Trainer:
    """The configured trainer with its loggers and callbacks (and `extra_callbacks`), the run's whole
    config logged as its hyper-parameters."""
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
    return trainer


def fit_model(
    trainer: L.Trainer,
    model: ClassifierLitModule,
    datamodule: TextClassificationDataModule,
    ckpt_path: str | Path | None,
) -> dict[str, float]:
    """Fits the model (from `ckpt_path` when resuming); returns the validation metrics, with the best
    monitored value even when the run resumed after its last validation."""
    with warnings.catch_warnings():  # the data module restores the position in the epoch (datamodule.py)
        warnings.filterwarnings("ignore", message=".*your dataloader is not resumable")
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    metrics = scalars(trainer.callback_metrics, "val/")
    best = f"val/{model.task.monitor}_best"
    if best not in metrics and model.val_acc_best.max_value.isfinite():  # resumed after the last
        metrics[best] = float(model.val_acc_best.max_value)  # validation: no new one ran
    return metrics


def best_model_path(trainer: L.Trainer) -> str:
    """The best checkpoint the run saved; "" when no checkpoint callback kept one."""
    best_checkpoint = next((c for c in trainer.checkpoint_callbacks if isinstance(c, ModelCheckpoint)), None)
    return best_checkpoint.best_model_path if best_checkpoint else ""


def evaluate_best(
    cfg: DictConfig,
    trainer: L.Trainer,
    datamodule: TextClassificationDataModule,
    model: ClassifierLitModule,
    best_path: str,
) -> dict[str, float]:
    """What the best checkpoint is measured on after fitting: its calibration fitted on validation when the
    settings ask for one, then the test metrics (`test=true`)."""
    metrics: dict[str, float] = {}
    if model.hparams.get("calibrate") or model.hparams.get("threshold") == TUNED:
        metrics |= calibrate_best(cfg, trainer, datamodule, model, best_path)
    if cfg.get("test"):
        reload = best_path and not holds_best_weights(trainer, best_path)
        if not reload:  # what reading the checkpoint back would give the model (`on_load_checkpoint`)
            model.data_hparams = dict(datamodule.hparams)
        trainer.test(model, datamodule=datamodule, ckpt_path=best_path if reload else None, weights_only=True)
        metrics |= scalars(trainer.callback_metrics, "test/")
    return metrics


def write_results(
    cfg: DictConfig, trainer: L.Trainer, metrics: dict[str, float], output_dir: Path, best_path: str
) -> None:
    """The run's metrics to its loggers and `metrics.json` (global rank zero only), the export to the
    trackers when asked (`log_export`); the trackers are then finished."""
    log_hparams_with_metrics(trainer, cfg, metrics)
    if trainer.is_global_zero:
        write_json_atomically(output_dir / "metrics.json", {**metrics, "best_model_path": best_path})
        if cfg.get("log_export") and best_path:
            trackers.log_export(trainer.loggers, best_path)
    trackers.finish(trainer.loggers)
