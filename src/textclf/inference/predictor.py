"""Batched inference with a trained classifier: length-sorted batches, 16-bit weights where the hardware
is fast at them, smaller slices when memory runs out. Used by `textclf-predict` and `textclf-eval`."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from rich.progress import Progress
from torch.utils.data import DataLoader
from transformers import PreTrainedTokenizerBase

from textclf.data import batching
from textclf.data.batching import LengthBucketBatchSampler, TokenizedSplit
from textclf.data.tokenization import FULL, check_truncation, tokenize_cached
from textclf.data.windows import TextBatchSampler, aggregate, check_windows, cut_windows, special_tokens
from textclf.errors import CheckpointError, DataError, SettingError
from textclf.inference.settings import PRECISIONS
from textclf.log import log
from textclf.model.loading import load_trained
from textclf.model.tasks import TUNED, SingleLabel
from textclf.model.trained import TrainedClassifier
from textclf.precision import inference_precision

if TYPE_CHECKING:  # a training run's LightningModule serves too; Lightning is not imported to say so
    from textclf.training.lit_module import ClassifierLitModule

BATCH_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def is_out_of_memory(error: RuntimeError) -> bool:
    """CUDA's OutOfMemoryError, or the CPU allocator failing."""
    return isinstance(error, torch.OutOfMemoryError) or "can't allocate memory" in str(error)


def precision_dtypes(precision: str) -> tuple[torch.dtype | None, torch.dtype | None]:
    """The dtype of the weights (None: as they are) and the autocast dtype (None: no autocast) that an
    inference precision stands for, `auto` resolved for this hardware."""
    if precision not in PRECISIONS:
        raise SettingError(f"precision must be one of {', '.join(PRECISIONS)}, not '{precision}'")
    precision = str(inference_precision(precision))
    weights = {"bf16-true": torch.bfloat16, "16-true": torch.float16}.get(precision)  # no cast per operation
    return weights, {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(precision)


def check_pairs_match(text_pair_column: str | None, pairs: pd.Series | list[str] | None) -> None:
    """A pair model (trained with a `text_pair_column`) needs the second texts, a single-text model must
    not get them."""
    if text_pair_column is not None and pairs is None:
        raise DataError(f"this model reads pairs of texts: give the second text of each (column '{text_pair_column}')")
    if text_pair_column is None and pairs is not None:
        raise DataError("this model reads single texts, not pairs (it was trained without data.text_pair_column)")


def warn_of_unfitted(path: str | Path, hparams: Mapping[str, Any]) -> None:
    """Tuned thresholds and the temperature are fitted after training and stored in the best checkpoint
    only: says so when a checkpoint of such a run lacks them."""
    missing = [
        what
        for what, setting, value in (
            ("tuned thresholds (labels are predicted at 0.5)", hparams.get("threshold") == TUNED, "thresholds"),
            ("temperature (probabilities are not calibrated)", hparams.get("calibrate"), "temperature"),
        )
        if setting and hparams.get(value) in (None, 1.0)
    ]
    if missing:
        log.warning(f"{path}: holds no {' and no '.join(missing)}; the run's best checkpoint has them")


def quantized_int8(model: torch.nn.Module) -> torch.nn.Module:
    """`model` with every Linear layer dynamically quantized to int8. PyTorch marks `quantize_dynamic`
    deprecated (torchao succeeds it) but it still works in 2.13."""
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def autocast_to(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Autocast to `dtype` on `device`; no autocast where `dtype` is None (fp32, or 16-bit weights)."""
    return torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()


def text_loader(
    tokenized: tuple[np.ndarray, np.ndarray, np.ndarray | None],
    tokenizer: PreTrainedTokenizerBase,
    batch_size: int,
    pad_to_multiple_of: int,
    windows: bool,
    max_length: int,
    window_stride: int,
) -> DataLoader:
    """Length-sorted batches of tokenized texts (no labels), each row with its index in the texts. With
    `windows` every text is cut into windows of `max_length` and all windows of a text go in one batch,
    where their logits are aggregated."""
    input_ids, offsets, segments = tokenized
    if windows:
        input_ids, offsets, text_index = cut_windows(
            input_ids, offsets, max_length, window_stride, *special_tokens(tokenizer)
        )
        dataset = TokenizedSplit(input_ids, offsets, np.zeros(len(text_index), dtype=np.int64), None, text_index)
        sampler = TextBatchSampler(text_index, dataset.lengths, batch_size)
    else:
        dataset = TokenizedSplit(input_ids, offsets, np.zeros(len(offsets) - 1, dtype=np.int64), segments)
        sampler = LengthBucketBatchSampler(dataset.lengths, batch_size, shuffle=False)
    return batching.loader(dataset, sampler, tokenizer.pad_token_id, pad_to_multiple_of, by_text=windows)


def label_names(
    task: SingleLabel, id2label: dict[int, str], probabilities: np.ndarray
) -> list[str | list[str] | float]:
    """What `Predictor.labels_of` returns; needs only the task's decision rule and the label names."""
    if task.regression:
        return [round(float(score), 6) for score in probabilities[:, 0]]
    chosen = task.decisions(torch.from_numpy(probabilities)).numpy()
    if task.multi_label:
        return [[id2label[i] for i in np.flatnonzero(row)] for row in chosen]
    return [id2label[int(row.argmax())] for row in chosen]


class SlicedForward:
    """Forward passes over a batch in slices of `rows` rows. When memory runs out, the slice is halved
    and retried, and stays halved for the batches after it: the state is the largest slice that fits."""

    def __init__(self, rows: int) -> None:
        self.rows = rows

    def __call__(self, model: torch.nn.Module, batch: dict[str, torch.Tensor], device: torch.device) -> torch.Tensor:
        """The batch's logits (fp32, on the CPU), one row per row of the batch."""
        outputs, start = [], 0
        while start < len(batch["input_ids"]):
            rows = slice(start, start + self.rows)
            try:
                # token type ids only for text pairs
                inputs = [batch[name][rows].to(device) for name in BATCH_INPUTS if name in batch]
                logits = model(*inputs)
            except RuntimeError as error:  # torch.OutOfMemoryError (CUDA) is a RuntimeError too
                if not is_out_of_memory(error) or self.rows == 1:
                    raise
                self.rows //= 2
                log.warning(f"out of memory: predicting {self.rows} texts at a time")
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                continue
            outputs.append(logits.float().cpu())
            start += len(outputs[-1])
        return torch.cat(outputs)


class Predictor:
    """Batched, length-sorted inference under `inference_mode`, with 16-bit weights (or autocast) where
    the hardware is fast at them (see `precision.inference_precision`).

    `max_length`, `truncation` and the window settings (`long_texts`, `window_stride`,
    `window_aggregation`) default to the values the checkpoint was trained with (checkpoints older than
    windows: truncate). With windows every window of a text is predicted and their logits aggregated.
    `model`: a checkpoint's classifier (`from_checkpoint` loads it without Lightning) or a training run's
    LightningModule.
    """

    def __init__(
        self,
        model: TrainedClassifier | ClassifierLitModule,
        batch_size: int = 64,
        max_length: int | None = None,
        truncation: str | None = None,
        precision: str = "auto",
        device: str = "auto",
        quantize: bool = False,
        long_texts: str | None = None,
        window_stride: int | None = None,
        window_aggregation: str | None = None,
    ) -> None:
        if model.tokenizer is None:
            raise CheckpointError("this checkpoint carries no tokenizer (saved by another program?)")
        self.device = pick_device(device)
        self.model = model.eval().to(self.device)
        self.task, self.tokenizer = model.task, model.tokenizer
        self.batch_size = batch_size
        self.sliced_forward = SlicedForward(batch_size)
        self.max_length = max_length or model.data_hparams.get("max_length") or self.tokenizer.model_max_length
        self.truncation = truncation or model.data_hparams.get("truncation", "head")
        # the column of the second text when the model was trained on pairs (absent from older checkpoints)
        self.text_pair_column: str | None = model.data_hparams.get("text_pair_column")
        self.pair_truncation = model.data_hparams.get("pair_truncation", "longest_first")
        check_truncation(self.truncation, pairs=self.pairs, pair_truncation=self.pair_truncation)
        hparams = model.data_hparams
        self.long_texts = long_texts or hparams.get("long_texts", "truncate")
        self.window_stride = hparams.get("window_stride", 32) if window_stride is None else window_stride
        self.window_aggregation = window_aggregation or hparams.get("window_aggregation", "mean")
        specials = sum(special_tokens(self.tokenizer))
        check_windows(
            self.long_texts, self.window_stride, None, self.window_aggregation, self.max_length, self.pairs, specials
        )
        weights_dtype, self.autocast_dtype = precision_dtypes(precision)
        if quantize:
            self.quantize_int8()
        elif weights_dtype is not None:  # 16-bit weights
            self.model = self.model.to(weights_dtype)

    def quantize_int8(self) -> None:
        """Dynamic int8 quantization of every Linear layer, for CPU inference (fp32 elsewhere)."""
        if self.device.type != "cpu":
            raise SettingError("quantize=true is for CPU inference (device=cpu)")
        self.model = quantized_int8(self.model)
        self.autocast_dtype = None  # int8 kernels take fp32 activations

    @classmethod
    def from_checkpoint(cls, path: str | Path, **options: Any) -> Predictor:
        model = load_trained(path)
        warn_of_unfitted(path, model.hparams)
        return cls(model, **options)

    @classmethod
    def from_settings(cls, cfg: Any, batch_size: int) -> Predictor:
        """The checkpoint of a command's config with its inference keys (`textclf-predict`'s and
        `textclf-serve`'s: max_length, truncation, precision, device, quantize, window_aggregation)."""
        return cls.from_checkpoint(
            cfg.ckpt_path,
            batch_size=batch_size,
            max_length=cfg.max_length,
            truncation=cfg.truncation,
            precision=cfg.precision,
            device=cfg.device,
            quantize=cfg.quantize,
            window_aggregation=cfg.get("window_aggregation"),
        )

    @property
    def id2label(self) -> dict[int, str]:
        return self.model.id2label

    @property
    def pairs(self) -> bool:
        """Whether the model reads pairs of texts."""
        return self.text_pair_column is not None

    @property
    def rows_per_forward(self) -> int:
        """How many rows one forward pass takes: `batch_size`, halved each time memory ran out."""
        return self.sliced_forward.rows

    @rows_per_forward.setter
    def rows_per_forward(self, rows: int) -> None:
        self.sliced_forward.rows = rows

    def logits(self, loader: DataLoader, total: int, show_progress: bool = False) -> np.ndarray:
        """Logits [examples, labels] in dataset order, whatever order the batches come in."""
        logits = np.zeros((total, len(self.id2label)), dtype=np.float32)
        autocast = autocast_to(self.device, self.autocast_dtype)
        with Progress(transient=True, disable=not show_progress) as progress, torch.inference_mode(), autocast:
            task = progress.add_task("predicting", total=total)
            for batch in loader:
                logits[batch["index"].numpy()] = self.batch_logits(batch).numpy()
                progress.advance(task, len(batch["index"]))
        return logits

    def batch_logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """One batch's logits, one row per text: in slices that shrink when memory runs out."""
        logits = self.sliced_forward(self.model, batch, self.device)
        if "window_text" in batch:  # windows of whole texts: one row per text
            logits = aggregate(logits, batch["window_text"], len(batch["index"]), self.window_aggregation)
        return logits

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        return self.task.probabilities(torch.from_numpy(logits)).numpy()

    def text_logits(
        self,
        texts: pd.Series | list[str],
        show_progress: bool = False,
        cache_dir: str | None = None,
        batch_size: int | None = None,
        pad_to_multiple_of: int = batching.PAD_TO_MULTIPLE_OF,
        pairs: pd.Series | list[str] | None = None,
    ) -> np.ndarray:
        """Logits [texts, labels] in the order of `texts` (with `pairs`, the second text of each pair):
        tokenized as the checkpoint was trained (through the token cache when `cache_dir` is given), in
        length-sorted batches of `batch_size`."""
        loader = text_batches(self, texts, cache_dir, batch_size, pad_to_multiple_of, pairs)
        return self.logits(loader, len(texts), show_progress)

    def check_pairs(self, pairs: pd.Series | list[str] | None) -> None:
        """A pair model needs the second texts, a single-text model must not get them."""
        check_pairs_match(self.text_pair_column, pairs)

    def predict_proba(
        self, texts: list[str], show_progress: bool = False, pairs: list[str] | None = None
    ) -> np.ndarray:
        """Probabilities [texts, labels], in the order of `texts` (and their `pairs`, for a pair model)."""
        return self.probabilities(self.text_logits(texts, show_progress, pairs=pairs))

    def labels_of(self, probabilities: np.ndarray) -> list[str | list[str] | float]:
        """Predicted label names: the most probable class, or every label over the threshold; for
        regression the score."""
        return label_names(self.task, self.id2label, probabilities)


def text_batches(
    predictor: Predictor,
    texts: pd.Series | list[str],
    cache_dir: str | None = None,
    batch_size: int | None = None,
    pad_to_multiple_of: int = batching.PAD_TO_MULTIPLE_OF,
    pairs: pd.Series | list[str] | None = None,
) -> DataLoader:
    """The length-sorted batches of `texts` tokenized as the predictor's checkpoint was trained (through the
    token cache when `cache_dir` is given), each row with its index in `texts`."""
    predictor.check_pairs(pairs)
    windows = predictor.long_texts == "window"
    tokenized = tokenize_cached(
        texts,
        predictor.tokenizer,
        predictor.max_length,
        cache_dir,
        FULL if windows else predictor.truncation,
        pairs=pairs,
        pair_truncation=predictor.pair_truncation,
    )
    size = batch_size or predictor.batch_size
    max_length, stride = predictor.max_length, predictor.window_stride
    return text_loader(tokenized, predictor.tokenizer, size, pad_to_multiple_of, windows, max_length, stride)
