"""How the commands find and compose their Hydra configs (`pkg://textclf.conf`, whose import registers every
group's schema), check them before any work (`textclf.validation`), the resolvers those configs use, and
`plain` for turning a config node into Python values, and `instantiate_group` for a group of `_target_`s."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from textclf.run_dirs import run_dir
from textclf.schema import register, setting
from textclf.validation import SettingsError, all_keys, check_config, checked, composition_error_line

CONFIG_MODULE = "textclf.conf"
CONFIG_PATH = f"pkg://{CONFIG_MODULE}"


# hydra/default.yaml names the run dir through it: a new one, or the run that `resume=` continues
OmegaConf.register_new_resolver("textclf_run_dir", run_dir, replace=True)
# the validation metric that picks the best checkpoint and stops early, by data.task (tasks.py's `monitor`)
OmegaConf.register_new_resolver(
    "textclf_monitor", lambda task: "pearson" if task == "regression" else "acc", replace=True
)


@dataclass
class PathsSettings:
    """conf/paths: where a run writes."""

    output_dir: str = setting()
    cache_dir: str = setting()


register("paths", PathsSettings)


# the commands that train have a `strategy` group, kept apart from conf/'s groups (conf/training/strategy) and
# put on their search path alone: textclf-select has a `strategy` key of its own, which Hydra would take for a
# choice of that group (hydra.searchpath may be set only by a primary config or the command line)
TRAINING_CONFIGS = ("train", "sweep", "audit")
TRAINING_SEARCH_PATH = "pkg://textclf.conf.training"


def with_search_path(config_name: str, overrides: list[str]) -> list[str]:
    """The command line's overrides, with the training groups' search path for the commands that train
    (joined to a `hydra.searchpath=[...]` of the user's own, which would otherwise replace it)."""
    if config_name not in TRAINING_CONFIGS:
        return list(overrides)
    if not any(override.startswith("hydra.searchpath=") for override in overrides):  # last: after any flag
        return [*overrides, f"hydra.searchpath=[{TRAINING_SEARCH_PATH}]"]
    return [
        f"hydra.searchpath=[{TRAINING_SEARCH_PATH},{override.split('=', 1)[1].strip()[1:-1]}]"
        if override.startswith("hydra.searchpath=")
        else override
        for override in overrides
    ]


def composed(config_name: str, overrides: list[str]) -> DictConfig:
    """A command's config with its `hydra` node, as Hydra composes it (HydraConfig set, so that `${hydra:...}`
    resolves); a composition error (a wrong type, an unknown key or config) raised as a one-line SettingsError."""
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
            try:
                cfg = compose(config_name, overrides=with_search_path(config_name, overrides), return_hydra_config=True)
            except (HydraException, OmegaConfBaseException) as error:
                keys = keys_for_hint(config_name, overrides)
                raise SettingsError([composition_error_line(error, keys)]) from None
    finally:
        GlobalHydra.instance().clear()
    HydraConfig.instance().set_config(cfg)
    return cfg


def keys_for_hint(config_name: str, overrides: list[str]) -> list[str]:
    """The keys of the config the overrides' group choices compose (`data=hf` adds keys), for a typo's hint."""
    groups = [item for item in overrides if "=" in item and "." not in item.split("=")[0] and item[0] not in "+~"]
    try:
        return all_keys(compose(config_name, overrides=with_search_path(config_name, groups)))
    except (HydraException, OmegaConfBaseException):
        return []


def check_command_line(config_name: str, overrides: list[str]) -> None:
    """Compose and check a command's config before Hydra runs it (and writes anything): SettingsError."""
    check_config(composed(config_name, overrides))


def compose_config(config_name: str, overrides: list[str], output_dir: Path) -> DictConfig:
    """A command's config composed in-process as the command would compose it, and checked, writing into
    `output_dir`: how tests and benchmarks call `train(cfg)`, `evaluate(cfg)`, ... without a CLI."""
    cfg = composed(config_name, [f"hydra.run.dir={output_dir}", *overrides])
    with open_dict(cfg):  # as in a real run: the resolved run dir, no `hydra` node
        cfg.paths.output_dir = str(output_dir)
        del cfg["hydra"]
    return checked(cfg)


def plain(value: Any) -> Any:
    """A config value as plain Python (checkpoints are read back with weights_only, which refuses
    OmegaConf objects)."""
    return OmegaConf.to_container(value, resolve=True) if isinstance(value, (DictConfig, ListConfig)) else value


def instantiate_group(group: DictConfig | None, **extra: dict[str, Any]) -> list[Any]:
    """Every `_target_` entry of a config group such as `callbacks` or `logger`; `extra[name]` adds
    arguments to the entry called `name`."""
    if not group:
        return []
    return [
        instantiate(entry, **extra.get(name, {}))
        for name, entry in group.items()
        if isinstance(entry, DictConfig) and "_target_" in entry
    ]
