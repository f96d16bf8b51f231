"""What goes to the experiment trackers (TensorBoard, MLflow, Weights & Biases) besides Lightning's scalars:
pictures, a folder of files (the best checkpoint's Hugging Face export) and the end of a run.

Lightning's logger classes import their tracker only when one is created, so this module needs neither
mlflow nor wandb installed."""

from __future__ import annotations

import tempfile
from pathlib import Path

from lightning.pytorch.loggers import Logger, MLFlowLogger, TensorBoardLogger, WandbLogger

from textclf.export import model_card
from textclf.export.hf import to_hf
from textclf.model.loading import load_trained
from textclf.plots import plt

TRACKERS = (MLFlowLogger, WandbLogger)


def takes_pictures(loggers: list[Logger]) -> bool:
    return any(isinstance(logger, (TensorBoardLogger, *TRACKERS)) for logger in loggers)


def log_figure(loggers: list[Logger], key: str, figure: plt.Figure, step: int) -> None:
    """A matplotlib figure as TensorBoard's image `key`, an MLflow image artifact `key/step_NNNNNN.png`, or
    a W&B image `key`; then closed."""
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_figure(key, figure, global_step=step, close=False)
        elif isinstance(logger, MLFlowLogger):
            logger.experiment.log_figure(logger.run_id, figure, f"{key}/step_{step:06d}.png")
        elif isinstance(logger, WandbLogger):
            logger.log_image(key, [figure], step=step)
    plt.close(figure)


def log_directory(loggers: list[Logger], directory: Path, name: str) -> None:
    """Every file of `directory` as artifacts: an MLflow artifact folder `name`, a W&B model artifact
    `name`."""
    for logger in loggers:
        if isinstance(logger, MLFlowLogger):
            logger.experiment.log_artifacts(logger.run_id, str(directory), name)
        elif isinstance(logger, WandbLogger):
            import wandb

            artifact = wandb.Artifact(f"{name}-{logger.experiment.id}", type="model")
            artifact.add_dir(str(directory))
            logger.experiment.log_artifact(artifact)


def finish(loggers: list[Logger]) -> None:
    """End the W&B run: the next `train()` in this process (a sweep's next trial) is a run of its own,
    not a continuation of this one."""
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.experiment.finish()


def log_export(loggers: list[Logger], checkpoint: str) -> None:
    """The Hugging Face export of `checkpoint` (weights, tokenizer, model card) as the artifact `hf_model`."""
    model = load_trained(checkpoint).float()
    with tempfile.TemporaryDirectory() as directory:
        to_hf(model, Path(directory))
        model_card.write(model, checkpoint, Path(directory), "hf_model")
        log_directory(loggers, Path(directory), "hf_model")
