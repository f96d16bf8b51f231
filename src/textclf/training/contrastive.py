"""`strategy=contrastive`: few-shot training as SetFit does it, in two phases, inside a textclf run.

Phase 1 fine-tunes the encoder on pairs of training examples drawn on the fly (`textclf.data.pairs`), with a
loss on the cosine similarity of their pooled embeddings, in its own Lightning fit: logged beside the run's
other curves (`contrastive/loss`), checkpointed to `checkpoints/contrastive_last.ckpt` and resumed from
there after a kill. Phase 2 embeds the training texts once and fits the head as a logistic regression
(`textclf.model.contrastive.fit_linear_head`); the run's trainer then validates the classifier and saves it
as the run's best checkpoint, which the run tests and which eval, predict and export read like any other.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Checkpoint, EarlyStopping, LearningRateMonitor, ModelSummary
from omegaconf import DictConfig
from torch.utils.data import DataLoader
from transformers import get_linear_schedule_with_warmup

from textclf.atomic import write_json_atomically
from textclf.config import instantiate_group
from textclf.data.batching import LengthBucketBatchSampler, loader
from textclf.data.pairs import PairBatchSampler, PairCollator, PairDataset, PairDrawer
from textclf.errors import SettingError
from textclf.log import log
from textclf.model import speedups
from textclf.model.contrastive import PAIR_LOSSES, fit_linear_head, pair_similarity
from textclf.model.network import PooledNetwork
from textclf.precision import resolve_precision
from textclf.run_dirs import CONTRASTIVE_LAST
from textclf.training.lit_module import ADAMW, parameter_groups
from textclf.training.resuming import AtomicCheckpointIO, LastCheckpoint, RandomStateCheckpoint, epoch_position

if TYPE_CHECKING:
    from textclf.training.datamodule import TextClassificationDataModule
    from textclf.training.lit_module import ClassifierLitModule

# written when phase 1 has finished: a resumed run goes straight to the head
PHASE_1_DONE = "contrastive_done.json"


def chosen_strategy(cfg: DictConfig, data: TextClassificationDataModule) -> str:
    """finetune or contrastive: `strategy.name`, or for auto the one that fits the training set's size
    (docs/fewshot.md); the choice and its reason are logged. A contrastive run that cannot be is one line."""
    strategy, hp = cfg.strategy, data.hparams
    unsuited = (
        "regression (pairs need classes)"
        if hp.task == "regression"
        else "text pairs (data.text_pair_column)"
        if hp.text_pair_column is not None
        else None
    )
    if strategy.name == "contrastive":
        refusal = (
            f"strategy=contrastive: not for {unsuited}; use strategy=finetune"
            if unsuited
            else "strategy=contrastive: one device only (trainer.devices=1)"
            if cfg.trainer.devices not in (1, "auto")
            else "strategy=contrastive: ckpt_path fits on from a fine-tuning checkpoint; use strategy=finetune"
            if cfg.get("ckpt_path")
            else None
        )
        if refusal:
            raise SettingError(refusal)
        return "contrastive"
    if strategy.name == "finetune":
        return "finetune"
    per_class = len(data.frames["train"]) / max(len(data.id2label), 1)
    if unsuited or cfg.get("ckpt_path") or cfg.trainer.devices not in (1, "auto"):
        reason = unsuited or ("ckpt_path" if cfg.get("ckpt_path") else "several devices")
        log.info(f"strategy=auto: finetune, for {reason}")
        return "finetune"
    chosen = "contrastive" if per_class <= strategy.contrastive_up_to else "finetune"
    log.info(
        f"strategy=auto: {chosen}, for {per_class:.1f} training examples per class "
        f"({'≤' if chosen == 'contrastive' else '>'} strategy.contrastive_up_to={strategy.contrastive_up_to})"
    )
    return chosen


class PairTrainingModule(L.LightningModule):
    """Phase 1: the network's encoder trained on pairs; the head is not used."""

    def __init__(self, net: PooledNetwork, loss: str, lr: float, weight_decay: float, warmup_fraction: float) -> None:
        super().__init__()
        self.net, self.loss = net, PAIR_LOSSES[loss]
        self.lr, self.weight_decay, self.warmup_fraction = lr, weight_decay, warmup_fraction

    def on_fit_start(self) -> None:
        if self.net.fast_dropout and self.device.type == "cpu":
            speedups.use_fast_dropout(self.net)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        similarity = pair_similarity(
            self.net, batch["input_ids"], batch["attention_mask"], batch["anchor_rows"], batch["partner_rows"]
        )
        loss = self.loss(similarity, batch["labels"])
        self.log("contrastive/loss", loss.detach(), prog_bar=True, batch_size=len(batch["labels"]))
        return loss

    def configure_optimizers(self) -> dict[str, Any]:
        groups = parameter_groups(self.net.encoder.named_parameters(), self.weight_decay)
        optimizer = ADAMW(groups, lr=self.lr)
        total = int(self.trainer.estimated_stepping_batches)
        scheduler = get_linear_schedule_with_warmup(optimizer, int(self.warmup_fraction * total), total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


class PairDataModule(L.LightningDataModule):
    """The training split's pairs, a fresh draw each epoch; checkpoints keep the position in the epoch."""

    def __init__(self, data: TextClassificationDataModule, iterations: int, batch_size: int, seed: int) -> None:
        super().__init__()
        self.data, self.iterations, self.batch_size = data, iterations, batch_size
        self.drawer = PairDrawer(data.datasets["train"].labels, seed)
        self.resume_batches = 0

    def train_dataloader(self) -> DataLoader:
        split = self.data.datasets["train"]
        sampler = PairBatchSampler(len(split), self.iterations, self.batch_size)
        sampler.skip_once(self.resume_batches)
        self.resume_batches = 0
        hp = self.data.hparams
        epoch = (lambda: self.trainer.current_epoch) if self.trainer else (lambda: 0)
        return DataLoader(
            PairDataset(split, self.drawer, epoch),
            batch_sampler=sampler,
            collate_fn=PairCollator(self.data.tokenizer.pad_token_id, hp.pad_to_multiple_of),
        )

    def state_dict(self) -> dict[str, int]:
        return epoch_position(self.trainer)

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        self.resume_batches = state_dict.get("batches_done", 0)


def watches_pairs(callback: L.Callback) -> bool:
    """Whether a configured callback also runs in phase 1: progress and the user's own callbacks do; those
    that keep, stop or picture the classifier by its validation, or log its learning rate, do not."""
    return not isinstance(callback, (Checkpoint, EarlyStopping, LearningRateMonitor, ModelSummary))


def train_pairs(cfg: DictConfig, model: ClassifierLitModule, data: TextClassificationDataModule, loggers: list) -> None:
    """Phase 1, resumed from `contrastive_last.ckpt` when a killed run left one, skipped when it finished."""
    strategy = cfg.strategy
    checkpoints = Path(cfg.paths.output_dir) / "checkpoints"
    last, done = checkpoints / CONTRASTIVE_LAST, checkpoints / PHASE_1_DONE
    module = PairTrainingModule(
        model.net, strategy.loss, strategy.body_lr, cfg.model.weight_decay, strategy.warmup_fraction
    )
    if done.is_file() and last.is_file():
        state = torch.load(last, map_location="cpu", weights_only=True)["state_dict"]
        module.load_state_dict(state)
        log.info(f"contrastive phase 1 finished before: encoder from {last}")
        return
    pairs = PairDataModule(data, strategy.num_iterations, strategy.batch_size, cfg.seed)
    every = (cfg.callbacks.get("last_checkpoint") or {}).get("every_n_train_steps", 500)
    callbacks = [LastCheckpoint(str(checkpoints), every, CONTRASTIVE_LAST), RandomStateCheckpoint()]
    callbacks += [callback for callback in instantiate_group(cfg.get("callbacks")) if watches_pairs(callback)]
    trainer = L.Trainer(  # the run's trainer settings that shorten a run (debug=fdr, debug=limit) apply too
        max_epochs=strategy.body_epochs,
        max_steps=cfg.trainer.get("max_steps", -1),
        limit_train_batches=cfg.trainer.limit_train_batches,
        fast_dev_run=cfg.trainer.fast_dev_run,
        accelerator=cfg.trainer.accelerator,
        devices=1,
        precision=resolve_precision(cfg.trainer.precision),
        logger=loggers or False,
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],
        log_every_n_steps=cfg.trainer.log_every_n_steps,
        deterministic=cfg.trainer.deterministic,
        enable_model_summary=False,
        enable_progress_bar=cfg.trainer.get("enable_progress_bar", True),
        default_root_dir=cfg.paths.output_dir,
    )
    resume = last if last.is_file() else None
    step = torch.load(last, map_location="cpu", weights_only=True, mmap=True)["global_step"] if resume else 0
    log.info(
        f"contrastive phase 1: {len(data.datasets['train'])} examples x {strategy.num_iterations} iterations x 2 "
        f"pairs, batches of {strategy.batch_size}, {strategy.body_epochs} epoch(s)"
        + (f"; resuming from {last} at step {step}" if resume else "")
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*your dataloader is not resumable")
        trainer.fit(module, datamodule=pairs, ckpt_path=resume)
    write_json_atomically(done, {"global_step": trainer.global_step})


@torch.no_grad()
def training_embeddings(model: ClassifierLitModule, data: TextClassificationDataModule, precision: str | int) -> tuple:
    """The pooled embedding and target of every training example (each window of a long text, with its
    text's label), the network in eval mode."""
    net, split, hp = model.net, data.datasets["train"], data.hparams
    was_training = net.training
    net.eval()
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=str(precision).startswith("bf16"))
    sampler = LengthBucketBatchSampler(split.lengths, hp.eval_batch_size, shuffle=False)
    embeddings, targets = [], []
    with autocast:
        for batch in loader(split, sampler, data.tokenizer.pad_token_id, hp.pad_to_multiple_of):
            embeddings.append(net.pooled(batch["input_ids"], batch["attention_mask"]).float())
            targets.append(batch["labels"])
    net.train(was_training)
    return torch.cat(embeddings), torch.cat(targets)


def fit_head(cfg: DictConfig, model: ClassifierLitModule, data: TextClassificationDataModule) -> None:
    """Phase 2: the head as a logistic regression on the training embeddings (class weights as sample weights)."""
    embeddings, targets = training_embeddings(model, data, resolve_precision(cfg.trainer.precision))
    weights = None
    if model.hparams.class_weights is not None and targets.ndim == 1:
        weights = torch.tensor(model.hparams.class_weights)[targets.long()]
    linear = model.net.head[-1]
    strategy = cfg.strategy
    weight, bias = fit_linear_head(
        embeddings, targets, linear.out_features, strategy.head_c, strategy.head_max_iter, weights
    )
    linear.weight.data.copy_(weight)
    linear.bias.data.copy_(bias)
    log.info(f"contrastive phase 2: a logistic regression head (C={cfg.strategy.head_c}) on {len(targets)} embeddings")


def save_classifier(
    trainer: L.Trainer, model: ClassifierLitModule, data: TextClassificationDataModule, path: Path
) -> dict:
    """Validates the classifier (when there is a validation split) and saves it as the run's checkpoint."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Total length of .* across ranks is zero")
        trainer.validate(model, datamodule=data, verbose=False)
    metrics = {key: float(value) for key, value in trainer.callback_metrics.items() if key.startswith("val/")}
    trainer.save_checkpoint(path, weights_only=True)
    log.info(f"contrastive classifier saved: {path}" + (f" ({json.dumps(metrics)})" if metrics else ""))
    return metrics
