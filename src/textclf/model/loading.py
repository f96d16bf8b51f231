"""Reading a checkpoint back safely, without Lightning.

A checkpoint is loaded with `weights_only` (no pickled code runs) and every failure is one line naming the
file; a checkpoint of textclf 0.1.0 is upgraded to today's layout; `load_trained` rebuilds the classifier it
holds for prediction, evaluation and export (a one-line `textclf-predict` is faster without Lightning:
docs/performance.md). `textclf.training.lit_module.load_lit_module` builds the LightningModule around it.
"""

from __future__ import annotations

import inspect
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from textclf.data.tokenization import tokenizer_from_files
from textclf.errors import CheckpointError, first_line
from textclf.model.lora import merge_lora
from textclf.model.network import build_network
from textclf.model.trained import TrainedClassifier


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu", mmap: bool = False) -> dict[str, Any]:
    """A checkpoint's contents, loaded with `weights_only` (no pickled code runs), or a one-line error for
    a file that is missing, truncated, corrupted or unsafe."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    if not zipfile.is_zipfile(path):  # every checkpoint torch.save has written since PyTorch 1.6
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated, corrupted or not a PyTorch file)")
    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as error:
        reason = (
            str(error).strip().splitlines()[0]
            if "weights_only" not in str(error)
            else "it holds pickled objects that are not plain data (refused: loading them could run code)"
        )
        raise CheckpointError(f"{path}: refused: {reason}") from None
    except Exception as error:  # the unpickler fails in many ways on a damaged file
        detail = str(error).strip().split(". ")[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or corrupted: {detail})") from None


def arguments_of(function: Any, settings: dict[str, Any]) -> dict[str, Any]:
    """The entries of `settings` that `function` takes."""
    return {key: value for key, value in settings.items() if key in inspect.signature(function).parameters}


def upgrade(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint of textclf 0.1.0, whose module held the encoder and head itself with every setting as a
    hyper-parameter, in the current layout: the network's spec apart, its weights under `net.`."""
    if "network" in checkpoint:
        return checkpoint
    hparams = checkpoint["hyper_parameters"]
    network = arguments_of(build_network, hparams) | {
        "num_labels": len(hparams["id2label"]),
        "head": hparams["pooling"],
        "model_config": hparams["encoder_config"],
    }
    state = {
        (f"net.{name}" if name.startswith(("encoder.", "head.")) else name): value
        for name, value in checkpoint["state_dict"].items()
    }
    return checkpoint | {"network": network, "state_dict": state}


def load_trained(path: str | Path, map_location: str | torch.device = "cpu") -> TrainedClassifier:
    """The classifier a checkpoint holds, in eval mode, rebuilt from the checkpoint alone (no download; a LoRA
    checkpoint reads its frozen base from `model.net.pretrained`), without Lightning. Only the network's
    weights are read: the metric states beside them serve training. Any failure is one line naming the file."""
    checkpoint = read_checkpoint(path, map_location)
    try:
        checkpoint = upgrade(checkpoint)
        network, hparams = checkpoint["network"], checkpoint["hyper_parameters"]
    except (KeyError, TypeError) as error:
        raise CheckpointError(f"{path}: not a textclf checkpoint (missing {error})") from None
    try:
        net = build_network(**network)
    except (OSError, ValueError) as error:  # a LoRA checkpoint's base model cannot be read
        raise CheckpointError(
            f"{path}: its network cannot be built from '{network.get('pretrained')}' ({first_line(error)})"
        ) from None
    state = checkpoint["state_dict"]
    weights = {key.removeprefix("net."): value for key, value in state.items() if key.startswith("net.")}
    try:  # a LoRA checkpoint holds only what was trained: the rest came from `pretrained`
        loaded = net.load_state_dict(weights, strict=network.get("peft") is None)
    except RuntimeError as error:  # weights of another shape or name than the network it describes
        details = str(error).strip().splitlines()
        raise CheckpointError(f"{path}: its weights do not fit its network ({details[-1].strip()[:200]})") from None
    if loaded.unexpected_keys:
        raise CheckpointError(f"{path}: holds weights its network does not have (net.{loaded.unexpected_keys[0]}, ...)")
    merge_lora(net)  # inference needs no adapters of its own: faster, and quantizable
    files = checkpoint.get("tokenizer_files")
    model = TrainedClassifier(
        net,
        dict(hparams),
        dict(checkpoint.get("datamodule_hyper_parameters", {})),
        tokenizer_from_files(files) if files is not None else None,
    )
    return model.to(map_location).eval()
