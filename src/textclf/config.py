"""How the commands find and compose their Hydra configs (`pkg://textclf.conf`), the resolvers those
configs use, and `plain` for turning a config node into Python values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

from textclf.run_dirs import run_dir

CONFIG_MODULE = "textclf.conf"
CONFIG_PATH = f"pkg://{CONFIG_MODULE}"


# hydra/default.yaml names the run dir through it: a new one, or the run that `resume=` continues
OmegaConf.register_new_resolver("textclf_run_dir", run_dir, replace=True)
# the validation metric that picks the best checkpoint and stops early, by data.task (tasks.py's `monitor`)
OmegaConf.register_new_resolver(
    "textclf_monitor", lambda task: "pearson" if task == "regression" else "acc", replace=True
)


def compose_config(config_name: str, overrides: list[str], output_dir: Path) -> DictConfig:
    """A command's config composed in-process as the command would compose it, writing into
    `output_dir`: how tests and benchmarks call `train(cfg)`, `evaluate(cfg)`, ... without a CLI."""
    GlobalHydra.instance().clear()
    with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
        cfg = compose(config_name, overrides=[f"hydra.run.dir={output_dir}", *overrides], return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):  # as in a real run: the resolved run dir, no `hydra` node
        cfg.paths.output_dir = str(output_dir)
        del cfg["hydra"]
    GlobalHydra.instance().clear()
    return cfg


def plain(value: Any) -> Any:
    """A config value as plain Python (checkpoints are read back with weights_only, which refuses
    OmegaConf objects)."""
    return OmegaConf.to_container(value, resolve=True) if isinstance(value, (DictConfig, ListConfig)) else value
