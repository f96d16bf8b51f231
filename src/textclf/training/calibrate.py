"""After fitting: temperature scaling and tuned per-label thresholds fitted on the best checkpoint's
validation logits, stored back into that checkpoint (atomically), and their test-set effect reported."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig

from textclf.atomic import write_atomically
from textclf.inference.predictor import Predictor
from textclf.log import log
from textclf.model import calibration
from textclf.model.loading import load_trained
from textclf.model.tasks import TUNED
from textclf.precision import resolve_precision
from textclf.training.lit_module import ClassifierLitModule


def store(path: str | Path, temperature: float, thresholds: list[float] | None) -> None:
    """Write the temperature and thresholds into a checkpoint's hyper-parameters, atomically (a kill
    mid-write leaves the checkpoint as it was)."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    checkpoint["hyper_parameters"]["temperature"] = float(temperature)
    checkpoint["hyper_parameters"]["thresholds"] = [float(t) for t in thresholds] if thresholds else None
    write_atomically(Path(path), lambda target: torch.save(checkpoint, target), what="checkpoint")


def calibrate_best(
    cfg: DictConfig, trainer: L.Trainer, datamodule: Any, model: ClassifierLitModule, best_path: str
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
        store(best_path, temperature, thresholds)
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
