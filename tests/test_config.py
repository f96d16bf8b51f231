"""The configuration: one set of defaults for the CLI and the Python API, and what a run tells its user."""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import toy_reviews, toy_training
from hydra.utils import get_method, instantiate
from omegaconf import DictConfig, OmegaConf

from textclf.config import compose_config

# (config node of train.yaml, what it builds) for every node whose target textclf defines
TARGETS = (
    "model",
    "model.net",
    "data",
    "callbacks.progress_log",
    "callbacks.confusion_matrix",
    "callbacks.predicted_vs_true",
    "callbacks.test_report",
    "callbacks.last_checkpoint",
)


def default_of(value: Any) -> Any:
    """A YAML value as the Python default it stands for: `_partial_` configs become the partial."""
    if isinstance(value, DictConfig) and "_target_" in value:
        return instantiate(value)
    return OmegaConf.to_container(value, resolve=True) if isinstance(value, DictConfig) else value


def same(code: Any, yaml: Any) -> bool:
    if hasattr(code, "func") or hasattr(yaml, "func"):  # functools.partial objects compare by what they call
        return (getattr(code, "func", code), getattr(code, "keywords", {})) == (
            getattr(yaml, "func", yaml),
            getattr(yaml, "keywords", {}),
        )
    return code == yaml


@pytest.mark.parametrize("node", TARGETS)
def test_python_defaults_are_the_yaml_defaults_or_absent(node: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("TEXTCLF_CACHE_DIR", raising=False)
    cfg = compose_config("train", ["data=files"], tmp_path)  # data/files.yaml adds only the files to data/default.yaml
    section = OmegaConf.select(cfg, node)
    target = get_method(section._target_)
    parameters = inspect.signature(target).parameters
    yaml_keys = [key for key in section if not str(key).startswith("_") and not (node == "model" and key == "net")]
    assert not set(yaml_keys) - set(parameters), f"{node}: YAML keys the code does not take"
    for key in yaml_keys:
        code_default = parameters[key].default
        if code_default is inspect.Parameter.empty:
            continue  # no default in code: the YAML is the only one
        assert same(code_default, default_of(section[key])), (
            f"{node}.{key}: code {code_default!r}, YAML {section[key]!r}"
        )


@pytest.mark.parametrize("node", TARGETS)
def test_the_schema_declares_exactly_the_yaml_keys(node: str) -> None:
    """Code, schema and YAML agree: the test above holds the code to the YAML's defaults, this one the schema
    to the YAML's keys (composition refuses a YAML key the schema lacks; a schema key the YAML lacks would be
    a missing value)."""
    from dataclasses import fields

    from textclf.config import composed

    section = OmegaConf.select(composed("train", ["data=files"]), node)
    schema = OmegaConf.get_type(section)
    assert {field.name for field in fields(schema)} == set(section), node


@pytest.mark.slow
def test_a_redirected_run_prints_progress_lines_and_keeps_its_messages_in_train_log(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    csv = tmp_path / "reviews.csv"
    toy_reviews(600).to_csv(csv, index=False)
    run = tmp_path / "run"
    overrides = [
        *toy_training(csv),
        "trainer.max_epochs=2",
        f"model.net.pretrained={tiny_model_dir}",
        f"hydra.run.dir={run}",
        f"paths.cache_dir={tmp_path / 'cache'}",
        "logger=none",
        "callbacks.progress_log.every_n_steps=10",
    ]
    with open(tmp_path / "out.txt", "w") as out, open(tmp_path / "err.txt", "w") as err:  # not a terminal
        result = subprocess.run(
            [sys.executable, "-m", "textclf", "train", *overrides],
            stdout=out,
            stderr=err,
            env={**os.environ, "COLUMNS": "120"},
            timeout=300,
        )
    assert result.returncode == 0, (tmp_path / "err.txt").read_text()[-2000:]
    console = (tmp_path / "err.txt").read_text()
    # 480 training rows in batches of 16: 30 steps an epoch
    step_lines = re.findall(
        r"\[textclf\] epoch (\d)/2 step (\d+)/60: loss \d+\.\d{4}, [\d.]+ samples/s, "
        r"\d+:\d\d elapsed, \d+:\d\d left",
        console,
    )
    assert [int(step) for _, step in step_lines] == [10, 20, 30, 40, 50, 60]
    assert re.search(
        r"\[textclf\] epoch 2/2 step 60/60: end of epoch, mean loss \d\.\d{4}, val/loss \d\.\d{4}, val/acc ", console
    )
    log = (run / "train.log").read_text()
    for message in ('data: {"splits": {"train": 480', "bert with the native head; speed-ups:", "epoch 2/2 step 60/60"):
        assert message in log, message
