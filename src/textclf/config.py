"""How the commands find and compose their Hydra configs (`pkg://textclf.conf`, whose import registers every
group's schema), check them before any work (`textclf.validation`), the resolvers those configs use, and
`plain` for turning a config node into Python values."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
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


def composed(config_name: str, overrides: list[str]) -> DictConfig:
    """A command's config with its `hydra` node, as Hydra composes it (HydraConfig set, so that `${hydra:...}`
    resolves); a composition error (a wrong type, an unknown key or config) raised as a one-line SettingsError."""
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
            try:
                cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
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
        return all_keys(compose(config_name, overrides=groups))
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
