"""Checkpoint files: which run `resume=` continues, and reading a checkpoint back safely.

Lightning saves the model, optimizer, scheduler, loop progress and callback states; `resuming.py` adds
atomic writes and the random state, and the data module the dataloader's position in the epoch (see
`data.py`), so that a resumed run ends with the same numbers as one that never stopped. Here `resume=auto`
finds the run to continue, and a checkpoint is read back with `weights_only`: `load_trained` rebuilds the
classifier it holds for prediction, evaluation and export without importing Lightning (a one-line
`textclf-predict` is faster: docs/performance.md), `load_classifier` the LightningModule around it.
"""

from __future__ import annotations

import inspect
import pickle
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from textclf import adapters
from textclf.classifier import TrainedClassifier
from textclf.errors import CheckpointError, first_line
from textclf.network import build_network
from textclf.tokenization import tokenizer_from_files

if TYPE_CHECKING:
    from textclf.module import TextClassifier

LAST = "last.ckpt"


def is_unfinished(run_dir: Path) -> bool:
    """A run that saved a checkpoint (or a sweep that started its study, or a cross-validation that started
    a fold) but never wrote its final metrics."""
    started = (
        (run_dir / "checkpoints" / LAST).is_file()
        or (run_dir / "sweep.json").is_file()
        or any(run_dir.glob("fold_*/checkpoints/" + LAST))
        or any(run_dir.glob("fold_*/metrics.json"))
    )
    return started and not (run_dir / "metrics.json").exists()


def run_dir(resume: str | None, fresh: str) -> str:
    """Hydra's run dir (resolver `textclf_run_dir`): `fresh` for a new run; with `resume=auto` the newest
    unfinished run beside it (or `fresh` when there is none); with `resume=<run dir>` that run."""
    if resume is None:
        return fresh
    if str(resume) != "auto":
        return str(resume)
    runs = Path(fresh).parent
    candidates = [path for path in runs.iterdir() if path.is_dir() and is_unfinished(path)] if runs.is_dir() else []
    return str(max(candidates, key=lambda path: path.stat().st_mtime)) if candidates else fresh


def resume_checkpoint(output_dir: Path, resume: str | None) -> Path | None:
    """The checkpoint a resumed run continues from: the run dir's last.ckpt, or None for a new run."""
    if resume is None:
        return None
    last = output_dir / "checkpoints" / LAST
    if last.is_file():
        return last
    if str(resume) != "auto":
        raise CheckpointError(f"resume={resume}: no checkpoint to resume from ({last} not found)")
    return None


def network_identity(spec: dict[str, Any]) -> dict[str, Any]:
    """What a network's spec must share with another for one's weights and optimizer state to fit the other."""
    return {
        "head": spec.get("head"),
        "peft": spec.get("peft"),
        "num_labels": spec.get("num_labels"),
        "model_type": spec.get("model_config", {}).get("model_type"),
    }


def resume_step(path: Path, spec: dict[str, Any]) -> int:
    """The global step of the checkpoint a run fits on from, once it is known to be readable and to hold the
    network that `spec` (the run's `model.net`) builds; a one-line error otherwise."""
    checkpoint = read_checkpoint(path, mmap=True)
    if "optimizer_states" not in checkpoint:
        raise CheckpointError(f"{path}: holds the weights only (a best checkpoint); fit on from last.ckpt")
    if "network" not in checkpoint:
        raise CheckpointError(
            f"{path}: a checkpoint of textclf 0.1.0 cannot be fitted on from; evaluate, predict "
            "or export it, or train anew"
        )
    saved, wanted = network_identity(checkpoint["network"]), network_identity(spec)
    for key in saved:
        if saved[key] != wanted[key]:
            raise CheckpointError(
                f"{path}: holds a network with {key} {saved[key]}, this run builds one with {wanted[key]}"
            )
    return int(checkpoint["global_step"])


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
    adapters.merge_lora(net)  # inference needs no adapters of its own: faster, and quantizable
    files = checkpoint.get("tokenizer_files")
    model = TrainedClassifier(
        net,
        dict(hparams),
        dict(checkpoint.get("datamodule_hyper_parameters", {})),
        tokenizer_from_files(files) if files is not None else None,
    )
    return model.to(map_location).eval()


def load_classifier(path: str | Path, map_location: str | torch.device = "cpu") -> TextClassifier:
    """The LightningModule around the classifier a checkpoint holds (`load_trained`), in eval mode."""
    from textclf.module import TextClassifier  # Lightning, only for a caller who wants the LightningModule

    trained = load_trained(path, map_location)
    module = TextClassifier(trained.net, **arguments_of(TextClassifier, trained.hparams), tokenizer=trained.tokenizer)
    module.data_hparams = trained.data_hparams
    return module.to(map_location).eval()
