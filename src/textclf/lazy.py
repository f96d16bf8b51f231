"""Names a package exports without importing them until first use, so that `import textclf` loads no torch
and `from textclf import Predictor` no Lightning; and the module paths of textclf's flat layout, kept for one
release as aliases that warn and name the new path (users' configs name them as `_target_`)."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
import warnings
from collections.abc import Callable
from typing import Any


def exports(package: str, names: dict[str, str], deprecated: dict[str, str] | None = None) -> Callable[[str], Any]:
    """A module `__getattr__` for `package`: `names` maps each exported name to the module that defines it;
    `deprecated` maps old names to "module:name" of what replaced them, each use warning once."""
    deprecated = deprecated or {}

    def __getattr__(name: str) -> Any:
        if name in names:
            return getattr(importlib.import_module(names[name]), name)
        if name in deprecated:
            return moved(f"{package}.{name}", deprecated[name])
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__


def moved(old: str, new: str) -> Any:
    """What `new` ("module:name") names, with a DeprecationWarning that `old` is its former path."""
    module, _, name = new.partition(":")
    warnings.warn(f"{old} moved to {module}.{name}; the old path goes in the next release", DeprecationWarning, 3)
    return getattr(importlib.import_module(module), name)


# the flat layout's modules: where their names went (a name not listed went to the module named for "*")
FLAT_LAYOUT: dict[str, dict[str, str]] = {
    "files": {"*": "textclf.atomic"},
    "cli": {
        "*": "textclf.running",
        "CONFIG_MODULE": "textclf.config",
        "CONFIG_PATH": "textclf.config",
        "compose_config": "textclf.config",
    },
    "sources": {
        "*": "textclf.data.sources",
        "Splits": "textclf.data.frames",
        "SPLITS": "textclf.data.frames",
        "plain": "textclf.config",
        "PACKAGED": "textclf.data.packaged",
        "PAIRED": "textclf.data.packaged",
    },
    "hf_datasets": {"*": "textclf.data.hf_datasets", "HubDataset": "textclf.data.hf_datasets:HuggingFaceDataset"},
    "splits": {"*": "textclf.data.splits"},
    "labels": {"*": "textclf.data.labels"},
    "tokenization": {"*": "textclf.data.tokenization"},
    "windows": {"*": "textclf.data.windows"},
    "batching": {"*": "textclf.data.batching"},
    "network": {"*": "textclf.model.network"},
    "speedups": {"*": "textclf.model.speedups"},
    "adapters": {"*": "textclf.model.lora"},
    "tasks": {"*": "textclf.model.tasks"},
    "calibration": {"*": "textclf.model.calibration", "store": "textclf.training.calibrate"},
    "classifier": {"*": "textclf.model.trained"},
    "checkpoints": {
        "*": "textclf.model.loading",
        "LAST": "textclf.run_dirs",
        "run_dir": "textclf.run_dirs",
        "is_unfinished": "textclf.run_dirs",
        "resume_checkpoint": "textclf.run_dirs",
        "resume_step": "textclf.training.resuming",
        "load_classifier": "textclf.training.lit_module:load_lit_module",
    },
    "module": {"*": "textclf.training.lit_module", "TextClassifier": "textclf.training.lit_module:ClassifierLitModule"},
    "resuming": {"*": "textclf.training.resuming"},
    "monitoring": {"*": "textclf.training.pictures"},
    "tracking": {"*": "textclf.training.trackers"},
    "progress": {"*": "textclf.training.progress_log"},
    "pruning": {"*": "textclf.training.pruning"},
    "crossval": {"*": "textclf.training.crossval"},
    "train": {"*": "textclf.training.fit", "main": "textclf.commands.train"},
    "text_progress": {"*": "textclf.inference.progress", "duration": "textclf.log"},
    "evaluate": {"*": "textclf.inference.evaluation", "main": "textclf.commands.evaluate"},
    "predict": {"*": "textclf.inference.prediction", "main": "textclf.commands.predict"},
    "model_card": {"*": "textclf.export.model_card"},
    "trials": {"*": "textclf.sweep.trials"},
}


def new_path(table: dict[str, str], name: str) -> str:
    """ "module:name" of what `name` of a flat-layout module (its `table`) is now."""
    where = table.get(name, table["*"])
    return where if ":" in where else f"{where}:{name}"


class FlatLayoutModule(types.ModuleType):
    """A flat-layout module path: each attribute is looked up where it moved, with a DeprecationWarning."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return moved(f"{self.__name__}.{name}", new_path(FLAT_LAYOUT[self.__name__.split(".")[1]], name))


class FlatLayoutFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds `textclf.<flat-layout module>` as a FlatLayoutModule (it imports nothing until used)."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        package, _, name = fullname.partition(".")
        if package == "textclf" and name in FLAT_LAYOUT:
            return importlib.machinery.ModuleSpec(fullname, self)
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return FlatLayoutModule(spec.name)

    def exec_module(self, module: types.ModuleType) -> None:
        pass

    def get_code(self, fullname: str) -> types.CodeType | None:
        """`python -m textclf.train` (a command's flat-layout module): the command, with the warning."""
        table = FLAT_LAYOUT[fullname.split(".")[1]]
        if "main" not in table:
            return None
        source = f"from textclf.lazy import moved\nmoved({fullname + '.main'!r}, {new_path(table, 'main')!r})()\n"
        return compile(source, fullname, "exec")


def install_flat_layout_finder() -> None:
    if not any(isinstance(finder, FlatLayoutFinder) for finder in sys.meta_path):
        sys.meta_path.append(FlatLayoutFinder())
