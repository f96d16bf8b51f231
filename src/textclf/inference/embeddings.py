"""Pooled text embeddings taken from the same forward pass as the logits: the encoder's last hidden states,
averaged over each text's tokens, caught by a hook on the encoder. The audit finds duplicates and outliers
with them, and `textclf-select` spreads its choice over them; neither pays a second forward pass."""

from __future__ import annotations

from types import TracebackType
from typing import Any

import numpy as np
import pandas as pd
import torch

from textclf.data import batching
from textclf.data.windows import aggregate
from textclf.inference.predictor import Predictor, autocast_to, text_batches
from textclf.model.network import mean_pooled


class PooledStates:
    """While open, every forward pass of `encoder` leaves its mean-pooled last hidden states [rows, width]
    (fp32, on the CPU); `take` returns those since the last call, in the order the slices ran."""

    def __init__(self, encoder: torch.nn.Module) -> None:
        self.encoder, self.caught, self.handle = encoder, [], None

    def __enter__(self) -> PooledStates:
        self.handle = self.encoder.register_forward_hook(self.catch, with_kwargs=True)
        return self

    def __exit__(self, kind: type | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.handle.remove()

    def catch(self, module: torch.nn.Module, args: tuple, kwargs: dict[str, Any], output: Any) -> None:
        hidden = output[0].float()
        mask = kwargs.get("attention_mask", args[1] if len(args) > 1 else None)
        mask = torch.ones(hidden.shape[:2], device=hidden.device) if mask is None else mask
        self.caught.append(mean_pooled(hidden, mask).cpu())

    def take(self) -> torch.Tensor:
        states, self.caught = torch.cat(self.caught), []
        return states


def logits_and_embeddings(
    predictor: Predictor,
    texts: pd.Series | list[str],
    pairs: pd.Series | list[str] | None = None,
    cache_dir: str | None = None,
    batch_size: int | None = None,
    pad_to_multiple_of: int = batching.PAD_TO_MULTIPLE_OF,
) -> tuple[np.ndarray, np.ndarray]:
    """Logits [texts, labels] and pooled embeddings [texts, width] in the order of `texts`, from one forward
    pass; a long text's windows are averaged."""
    loader = text_batches(predictor, texts, cache_dir, batch_size, pad_to_multiple_of, pairs)
    logits = np.zeros((len(texts), len(predictor.id2label)), dtype=np.float32)
    width = predictor.model.net.encoder.config.hidden_size
    embeddings = np.zeros((len(texts), width), dtype=np.float32)
    autocast = autocast_to(predictor.device, predictor.autocast_dtype)
    with PooledStates(predictor.model.net.encoder) as states, torch.inference_mode(), autocast:
        for batch in loader:
            index = batch["index"].numpy()
            logits[index] = predictor.batch_logits(batch).numpy()
            pooled = states.take()
            if "window_text" in batch:
                pooled = aggregate(pooled, batch["window_text"], len(index), "mean")
            embeddings[index] = pooled.numpy()
    return logits, embeddings
