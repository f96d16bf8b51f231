"""`textclf-train`: fit, then test the best checkpoint, all composed by Hydra.

`train(cfg)` is a plain function (tests call it in-process through `hydra.compose`); `main()` is the
Hydra entry point and returns the metric a sweep optimizes.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

from textclf import calibration, tracking
from textclf.checkpoints import load_trained, resume_checkpoint, resume_step
from textclf.cli import CONFIG_PATH, run_command
from textclf.crossval import cross_validate
from textclf.files import remove_partial_files, write_json_atomically
from textclf.inference import Predictor
from textclf.log import log
from textclf.module import TextClassifier
from textclf.precision import resolve_precision
from textclf.resuming import AtomicCheckpointIO, RandomStateCheckpoint
from textclf.tasks import TUNED, check_task_settings


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
            tracking.log_export(trainer.loggers, best_path)
    tracking.finish(trainer.loggers)
    return metrics, {"cfg": cfg, "datamodule": datamodule, "model": model, "trainer": trainer}


def calibrate_best(
    cfg: DictConfig, trainer: L.Trainer, datamodule: Any, model: TextClassifier, best_path: str
) -> dict[str, Any]:
    """Fit the temperature and/or per-label thresholds on the best checkpoint's validation logits and store
    them in that checkpoint (and in `model`, for a run without checkpoints). Every rank computes the same
    values; rank 0 writes. Returns them and the ECE (and F1 at 0.5) before and after, on validation and,
    when the run tests, on the test split."""
    best = load_trained(best_path) if best_path else model
    if not best_path:
        model.data_hparams = dict(datamodule.hparams)
    predictor = Predictor(
        best, precision=resolve_precision(cfg.trainer.precision), device=str(trainer.strategy.root_device)
    )

    def logits_and_targets(split: str) -> tuple[torch.Tensor, torch.Tensor]:
        frame = datamodule.frames[split]
        logits = predictor.text_logits(
            frame["text"],
            cache_dir=cfg.paths.cache_dir,
            batch_size=cfg.data.eval_batch_size,
            pad_to_multiple_of=cfg.data.pad_to_multiple_of,
            pairs=frame["text_pair"] if predictor.pairs else None,
        )
        return torch.from_numpy(logits), torch.from_numpy(datamodule.datasets[split].labels)

    multi_label = model.task.multi_label
    logits, targets = logits_and_targets("val")
    report = calibration.calibrate(
        logits, targets, multi_label, model.hparams.calibrate, model.hparams.threshold == TUNED
    )
    temperature, thresholds = report.pop("temperature"), report.pop("thresholds")
    model.set_calibration(temperature, thresholds)
    if best_path and trainer.is_global_zero:
        calibration.store(best_path, temperature, thresholds)
    trainer.strategy.barrier()  # the test reads the checkpoint back
    if cfg.get("test") and "test" in datamodule.frames:
        logits, targets = logits_and_targets("test")
        report["test/ece"] = calibration.expected_calibration_error(
            calibration.raw_probabilities(logits, multi_label), targets, multi_label
        )
        if model.hparams.calibrate:
            report["test/ece_calibrated"] = calibration.expected_calibration_error(
                calibration.raw_probabilities(logits, multi_label, temperature), targets, multi_label
            )
        if thresholds is not None:
            probabilities = calibration.raw_probabilities(logits, multi_label, temperature)
            report["test/f1_untuned"], report["test/f1_micro_untuned"] = calibration.f1_scores(
                probabilities >= 0.5, targets
            )
    log.info(
        f"calibrated on validation: temperature {temperature:.4f}"
        + (f", thresholds {[round(t, 4) for t in thresholds]}" if thresholds is not None else "")
        + f", ECE {report['val/ece']:.4f}"
        + (f" -> {report['val/ece_calibrated']:.4f}" if "val/ece_calibrated" in report else "")
    )
    return {**report, "temperature": temperature} | ({"thresholds": thresholds} if thresholds is not None else {})


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="train")
def main(cfg: DictConfig) -> float | None:
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN  # a failing job must not stop the others
    result = run_command(train, cfg, keep_going=multirun)
    return result[0].get(cfg.get("optimized_metric")) if result else None


if __name__ == "__main__":
    main()
