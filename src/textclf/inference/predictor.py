"""Batched inference with a trained classifier: length-sorted batches, 16-bit weights where the hardware
is fast at them, smaller slices when memory runs out. Used by `textclf-predict` and `textclf-eval`."""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from rich.progress import Progress
from torch.utils.data import DataLoader

from textclf.data import batching
from textclf.data.batching import LengthBucketBatchSampler, TokenizedSplit
from textclf.data.tokenization import FULL, check_truncation, tokenize_cached
from textclf.data.windows import TextBatchSampler, aggregate, check_windows, cut_windows, special_tokens
from textclf.errors import CheckpointError, DataError, SettingError
from textclf.log import log
from textclf.model.loading import load_trained
from textclf.model.tasks import TUNED
from textclf.model.trained import TrainedClassifier
from textclf.precision import inference_precision

if TYPE_CHECKING:  # a training run's LightningModule serves too; Lightning is not imported to say so
    from textclf.training.lit_module import ClassifierLitModule

BATCH_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
PRECISIONS = ("auto", "bf16-mixed", "16-mixed", "bf16-true", "16-true", "32-true")


def pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def is_out_of_memory(error: RuntimeError) -> bool:
    """CUDA's OutOfMemoryError, or the CPU allocator failing."""
    return isinstance(error, torch.OutOfMemoryError) or "can't allocate memory" in str(error)


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
        self.batch_size = self.rows_per_forward = batch_size
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
        check_windows(
            self.long_texts,
            self.window_stride,
            None,
            self.window_aggregation,
            self.max_length,
            self.pairs,
            sum(special_tokens(self.tokenizer)),
        )
        if precision not in PRECISIONS:
            raise SettingError(f"precision must be one of {', '.join(PRECISIONS)}, not '{precision}'")
        precision = inference_precision(precision)
        self.autocast_dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(str(precision))
        if quantize:
            self.quantize_int8()
        elif precision in ("bf16-true", "16-true"):  # 16-bit weights: no cast per operation
            self.model = self.model.to(torch.bfloat16 if precision == "bf16-true" else torch.float16)

    def quantize_int8(self) -> None:
        """Dynamic int8 quantization of every Linear layer, for CPU inference (fp32 elsewhere). PyTorch
        marks `quantize_dynamic` deprecated (torchao succeeds it) but it still works in 2.13."""
        if self.device.type != "cpu":
            raise SettingError("quantize=true is for CPU inference (device=cpu)")
        from torch.ao.quantization import quantize_dynamic

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            self.model = quantize_dynamic(self.model, {torch.nn.Linear}, dtype=torch.qint8)
        self.autocast_dtype = None  # int8 kernels take fp32 activations

    @classmethod
    def from_checkpoint(cls, path: str | Path, **options: Any) -> Predictor:
        model = load_trained(path)
        hparams = model.hparams
        missing = [
            what
            for what, setting, value in (
                ("tuned thresholds (labels are predicted at 0.5)", hparams.get("threshold") == TUNED, "thresholds"),
                ("temperature (probabilities are not calibrated)", hparams.get("calibrate"), "temperature"),
            )
            if setting and hparams.get(value) in (None, 1.0)
        ]
        if missing:  # fitted after training, stored in the best checkpoint only
            log.warning(f"{path}: holds no {' and no '.join(missing)}; the run's best checkpoint has them")
        return cls(model, **options)

    @property
    def id2label(self) -> dict[int, str]:
        return self.model.id2label

    @property
    def pairs(self) -> bool:
        """Whether the model reads pairs of texts."""
        return self.text_pair_column is not None

    def logits(self, loader: DataLoader, total: int, show_progress: bool = False) -> np.ndarray:
        """Logits [examples, labels] in dataset order, whatever order the batches come in."""
        logits = np.zeros((total, len(self.id2label)), dtype=np.float32)
        autocast = (
            torch.autocast(self.device.type, dtype=self.autocast_dtype)
            if self.autocast_dtype
            else contextlib.nullcontext()
        )
        with Progress(transient=True, disable=not show_progress) as progress, torch.inference_mode(), autocast:
            task = progress.add_task("predicting", total=total)
            for batch in loader:
                logits[batch["index"].numpy()] = self.batch_logits(batch).numpy()
                progress.advance(task, len(batch["index"]))
        return logits

    def batch_logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """One batch's logits, in slices of `rows_per_forward` rows. When memory runs out, the slice is
        halved and retried (and stays halved for the batches after it)."""
        outputs, start = [], 0
        while start < len(batch["input_ids"]):
            rows = slice(start, start + self.rows_per_forward)
            try:
                # token type ids only for text pairs
                inputs = [batch[name][rows].to(self.device) for name in BATCH_INPUTS if name in batch]
                logits = self.model(*inputs)
            except RuntimeError as error:  # torch.OutOfMemoryError (CUDA) is a RuntimeError too
                if not is_out_of_memory(error) or self.rows_per_forward == 1:
                    raise
                self.rows_per_forward //= 2
                log.warning(f"out of memory: predicting {self.rows_per_forward} texts at a time")
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                continue
            outputs.append(logits.float().cpu())
            start += len(outputs[-1])
        logits = torch.cat(outputs)
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
        self.check_pairs(pairs)
        windows = self.long_texts == "window"
        input_ids, offsets, segments = tokenize_cached(
            texts,
            self.tokenizer,
            self.max_length,
            cache_dir,
            FULL if windows else self.truncation,
            pairs=pairs,
            pair_truncation=self.pair_truncation,
        )
        if windows:  # every window of a text in one batch; its logits aggregated there
            input_ids, offsets, text_index = cut_windows(
                input_ids, offsets, self.max_length, self.window_stride, *special_tokens(self.tokenizer)
            )
            dataset = TokenizedSplit(input_ids, offsets, np.zeros(len(text_index), dtype=np.int64), None, text_index)
            sampler = TextBatchSampler(text_index, dataset.lengths, batch_size or self.batch_size)
        else:
            dataset = TokenizedSplit(input_ids, offsets, np.zeros(len(texts), dtype=np.int64), segments)
            sampler = LengthBucketBatchSampler(dataset.lengths, batch_size or self.batch_size, shuffle=False)
        loader = batching.loader(dataset, sampler, self.tokenizer.pad_token_id, pad_to_multiple_of, by_text=windows)
        return self.logits(loader, len(texts), show_progress)

    def check_pairs(self, pairs: pd.Series | list[str] | None) -> None:
        """A pair model needs the second texts, a single-text model must not get them."""
        if self.pairs and pairs is None:
            raise DataError(
                f"this model reads pairs of texts: give the second text of each (column '{self.text_pair_column}')"
            )
        if not self.pairs and pairs is not None:
            raise DataError("this model reads single texts, not pairs (it was trained without data.text_pair_column)")

    def predict_proba(
        self, texts: list[str], show_progress: bool = False, pairs: list[str] | None = None
    ) -> np.ndarray:
        """Probabilities [texts, labels], in the order of `texts` (and their `pairs`, for a pair model)."""
        return self.probabilities(self.text_logits(texts, show_progress, pairs=pairs))

    def labels_of(self, probabilities: np.ndarray) -> list[str | list[str] | float]:
        """Predicted label names: the most probable class, or every label over the threshold; for
        regression the score."""
        if self.task.regression:
            return [round(float(score), 6) for score in probabilities[:, 0]]
        names, chosen = self.id2label, self.task.decisions(torch.from_numpy(probabilities)).numpy()
        if self.task.multi_label:
            return [[names[i] for i in np.flatnonzero(row)] for row in chosen]
        return [names[int(row.argmax())] for row in chosen]
