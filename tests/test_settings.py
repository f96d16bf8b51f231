"""Every setting typed and checked before any work: each mistake is one line `textclf: error: <key>: ...`
and exit status 2, for every command, before Hydra makes a run dir or anything heavy is imported."""

from __future__ import annotations

import dataclasses
import functools
import importlib
import shutil
import subprocess
import sys
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import DictConfig, OmegaConf

from textclf.commands import COMMANDS
from textclf.config import check_command_line, composed
from textclf.errors import SettingError
from textclf.pretrained import pretrained_problem
from textclf.schema import rule_of
from textclf.validation import SettingsError

NO_HUB = "textclf-tests/not-a-model"  # a hub name no cache holds
# what each command needs to compose at all (its mandatory keys)
MANDATORY = {
    "train": [],
    "sweep": [],
    "eval": ["ckpt_path=run.ckpt"],
    "export": ["ckpt_path=run.ckpt"],
    "predict": ["ckpt_path=run.ckpt", "input=texts.txt", "output=out.csv"],
    "explain": ["ckpt_path=run.ckpt", "input=texts.txt", "output=out.jsonl"],
    "serve": ["ckpt_path=run.ckpt"],
    "audit": [],
    "select": ["ckpt_path=run.ckpt", "input=pool.csv", "output=next.csv"],
}

# (command, overrides, the one line): the mistakes of issue 26 first, then more of each kind
CASES = [
    ("train", ["data.batch_size=0"], "data.batch_size: 0 is out of range (a whole number ≥ 1)"),
    ("train", ["model.lr=abc"], "model.lr: 'abc' is not a number (a number > 0)"),
    (
        "train",
        ["model.pretrained=x"],
        "model.pretrained: no such key; did you mean model.net.pretrained? (it moved there, CHANGELOG.md)",
    ),
    (
        "train",
        [f"model.net.pretrained={NO_HUB}"],
        f"model.net.pretrained: '{NO_HUB}' is not a local folder nor in the hub cache, and HF_HUB_OFFLINE is set: "
        "download it first or set HF_HUB_OFFLINE=0",
    ),
    (
        "train",
        ["model.net.pretrained=/data/my-model"],
        "model.net.pretrained: /data/my-model: no such folder (a local model folder, a packaged model such as "
        "all-MiniLM-L6-v2, or a hub name)",
    ),
    (
        "train",
        ["model.task=regression"],
        "model.task: regression contradicts data.task=classification (set data.task=regression; model.task follows it)",
    ),
    ("train", ["trainer.max_epochs=-5"], "trainer.max_epochs: -5 is out of range (a whole number ≥ -1; -1: no limit)"),
    ("train", ["data.max_length=0"], "data.max_length: 0 is out of range (a whole number of tokens ≥ 4)"),
    ("train", ["data.val_fraction=1.5"], "data.val_fraction: 1.5 is out of range (a number in [0, 1))"),
    ("sweep", ["sweep.n_trials=0"], "sweep.n_trials: 0 is out of range (a whole number ≥ 1)"),
    (
        "predict",
        ["ckpt_path=run.ckpt", "input=-"],
        "output: missing (a .csv or .jsonl file, or - for standard output: output=…)",
    ),
    (
        "train",
        ["trainer.max_epoch=3"],
        "trainer.max_epoch: no such key; did you mean trainer.max_epochs? (a key the config lacks is added with "
        "+trainer.max_epoch=…)",
    ),
    (
        "train",
        ["callbacks.periodic_checkpoint.every_n_train_steps=5"],
        "callbacks.periodic_checkpoint: no such key; did you mean callbacks.last_checkpoint? (it moved there, "
        "CHANGELOG.md)",
    ),
    ("train", ["model.net.head=max"], "model.net.head: 'max' is not a choice (native, pooler, cls, mean)"),
    ("train", ["model.calibrate=maybe"], "model.calibrate: 'maybe' is not true or false (true or false)"),
    ("train", ["data.batch_size=1.5"], "data.batch_size: 1.5 is not a whole number (a whole number ≥ 1)"),
    (
        "train",
        ["data=nope"],
        "data: no config 'nope' (default, files, hf, imdb, newsgroups20, rotten_tomatoes, sentiment_pairs, "
        "sentiment_verdicts, sms_spam, trec6, vader_movies)",
    ),
    (
        "train",
        ["data=sentiment_pairs", "data.truncation=head_tail"],
        "data.truncation: head_tail is for single texts, not data.text_pair_column's pairs (head or tail)",
    ),
    (
        "train",
        ["data.pair_truncation=only_second"],
        "data.pair_truncation: only_second is for text pairs (set data.text_pair_column, or longest_first)",
    ),
    (
        "train",
        ["model.threshold=tuned"],
        "model.threshold: tuned tunes one threshold per label, data.multi_label=false (set it true, or 0.5)",
    ),
    (
        "train",
        ["trainer.min_epochs=4", "trainer.max_epochs=2"],
        "trainer.min_epochs: 4 is more than trainer.max_epochs=2 (at most max_epochs)",
    ),
    ("eval", ["ckpt_path=run.ckpt", "split=dev"], "split: 'dev' is not a choice (train, val, test)"),
    ("export", ["ckpt_path=run.ckpt", "format=tf"], "format: 'tf' is not a choice (hf, onnx)"),
    (
        "predict",
        ["ckpt_path=run.ckpt", "input=-", "output=out.xlsx"],
        "output: 'out.xlsx' is not an output (a .csv or .jsonl file, or - for standard output)",
    ),
    (
        "sweep",
        ["sweep.pruner=median", "sweep.metric=test/acc"],
        "sweep.pruner: median needs sweep.metric logged at validation (val/...), not 'test/acc'",
    ),
]
# a few of every kind in the fast tests; all of them in the slow ones
FAST = {0, 2, 10}


def entry_point(command: str) -> Any:
    module, name, _ = COMMANDS[command]
    return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize(
    ("command", "overrides", "line"),
    [pytest.param(*case, marks=() if index in FAST else pytest.mark.slow) for index, case in enumerate(CASES)],
)
def test_a_mistake_is_one_line_and_exit_status_2_before_anything_is_written(
    command: str, overrides: list[str], line: str, tmp_path: Path, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    run_dir = tmp_path / "run"
    monkeypatch.setattr(sys, "argv", [f"textclf-{command}", *overrides, f"hydra.run.dir={run_dir}"])
    with pytest.raises(SystemExit) as exit_info:
        entry_point(command)()
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.splitlines() == [f"textclf: error: {line}"]
    assert not run_dir.exists()  # checked before Hydra made the run dir


def test_the_command_line_tool_says_it_in_one_line_without_importing_torch(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from textclf.commands.train import main\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as exit:\n"
        "    print('torch' in sys.modules, exit.code)\n"
    )
    run_dir = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-c", code, "data.batch_size=0", f"hydra.run.dir={run_dir}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.stdout.split() == ["False", "2"]  # torch never imported, exit status 2
    assert result.stderr == "textclf: error: data.batch_size: 0 is out of range (a whole number ≥ 1)\n"
    assert not run_dir.exists()


def test_several_mistakes_are_a_line_each() -> None:
    with pytest.raises(SettingsError) as raised:
        check_command_line("train", ["data.batch_size=0", "data.eval_batch_size=0"])
    assert raised.value.lines == [
        "data.batch_size: 0 is out of range (a whole number ≥ 1)",
        "data.eval_batch_size: 0 is out of range (a whole number ≥ 1)",
    ]


def test_a_hub_name_that_cannot_be_downloaded_is_named_before_any_download(monkeypatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there: no network
    assert pretrained_problem(NO_HUB) == (
        f"'{NO_HUB}' is not a local folder, and the hub cannot be reached: "
        "download it where there is network, or give a local folder"
    )
    assert pretrained_problem("all-MiniLM-L6-v2") is None  # packaged: no network needed


def test_model_folders_that_cannot_load_are_named(tiny_model_dir: Path, tmp_path: Path) -> None:
    from textclf.model.network import build_network

    empty, no_tokenizer, no_weights, unknown = (tmp_path / name for name in ("empty", "notok", "noweights", "new"))
    empty.mkdir()
    for folder in (no_tokenizer, no_weights, unknown):
        shutil.copytree(tiny_model_dir, folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt"):
        (no_tokenizer / name).unlink(missing_ok=True)
    (no_weights / "model.safetensors").unlink()
    assert pretrained_problem(empty) == f"{empty} has no config.json (a model folder is written by save_pretrained)"
    assert pretrained_problem(no_weights) == (
        f"{no_weights} has no weights (model.safetensors, pytorch_model.bin): save the model into it"
    )
    assert pretrained_problem(no_tokenizer, "tokenizer") == (
        f"{no_tokenizer} has no tokenizer files (tokenizer.json, tokenizer_config.json, vocab.txt, vocab.json, "
        "spiece.model): save the tokenizer into it"
    )
    # the command names the key: data.tokenizer follows model.net.pretrained
    with pytest.raises(SettingsError) as raised:
        check_command_line("train", [f"model.net.pretrained={no_tokenizer}"])
    assert raised.value.lines == [f"data.tokenizer: {pretrained_problem(no_tokenizer, 'tokenizer')}"]
    # an architecture this transformers does not know passes the check, and is named when it is read
    (unknown / "config.json").write_text('{"model_type": "bert-of-2030"}')
    assert pretrained_problem(unknown) is None
    with pytest.raises(SettingError, match=rf"^model.net.pretrained: {unknown} is a 'bert-of-2030' model, an arch"):
        build_network(2, pretrained=str(unknown))


# --- every key of every command's default config: a wrong type and an out-of-range value -------------------

SCALARS = {int: "abc", float: "abc", bool: "maybe", str: "{a: 1}"}
# tried in turn for an out-of-range value: the first one the key's rule refuses (and its type takes)
OUT_OF_RANGE = ("-1000000", "1000000", "0", "-1", "1.5", "-0.5", "not_a_choice")


def field_type(schema: type, key: str) -> Any:
    """A field's type, Optional[...] unwrapped; Any for fields of no single scalar type."""
    wanted = typing.get_type_hints(schema).get(key, Any)
    return next((arg for arg in typing.get_args(wanted) if arg is not type(None)), wanted)


def typed_keys(node: DictConfig, prefix: str = "") -> list[tuple[str, type, str]]:
    """(key, its schema, its name in the schema) for every scalar key of nodes that have a schema."""
    schema = OmegaConf.get_type(node)
    found = []
    for key in node:
        if not prefix and key == "hydra":
            continue
        child = node._get_node(key)
        if isinstance(child, DictConfig) and not child._is_none() and not child._is_interpolation():
            found += typed_keys(child, f"{prefix}{key}.")
        elif dataclasses.is_dataclass(schema):
            found.append((f"{prefix}{key}", schema, str(key)))
    return found


def bad_values(schema: type, name: str) -> list[tuple[str, str]]:
    """(kind, override value): a value of the wrong type, and one the field's rule refuses."""
    wanted, rule, found = field_type(schema, name), rule_of(schema, name), []
    if wanted in SCALARS:
        found.append(("type", SCALARS[wanted]))
    if rule is not None:
        for text in OUT_OF_RANGE:
            value = yaml.safe_load(text)
            fits = wanted is Any or isinstance(value, wanted) or (wanted is float and isinstance(value, int))
            if fits and not rule.test(value):
                found.append(("range", text))
                break
    return found


def all_keys(cfg: DictConfig, prefix: str = "") -> list[str]:
    keys = []
    for key in cfg:
        if not prefix and key == "hydra":
            continue
        child = cfg._get_node(key)
        if isinstance(child, DictConfig) and not child._is_none() and not child._is_interpolation() and len(child):
            keys += all_keys(child, f"{prefix}{key}.")
        else:
            keys.append(f"{prefix}{key}")
    return keys


@functools.cache
def key_cases(commands: tuple[str, ...] = tuple(MANDATORY)) -> tuple[list[tuple[str, str, str, str]], dict]:
    """Every (command, key, kind, value) to try, and per command the composed keys no check covers."""
    cases, uncovered = [], {}
    for command in commands:
        cfg = composed(command, MANDATORY[command])
        covered = set()
        for key, schema, name in typed_keys(cfg):
            for kind, value in bad_values(schema, name):
                cases.append((command, key, kind, value))
                covered.add(key)
        uncovered[command] = sorted(set(all_keys(cfg)) - covered)
    return cases, uncovered


def assert_refused_in_one_line(command: str, key: str, value: str) -> None:
    with pytest.raises(SettingsError) as raised:
        check_command_line(command, [*MANDATORY[command], f"{key}={value}"])
    lines = raised.value.lines
    assert len(lines) == 1 and lines[0].startswith(f"{key}: "), (key, value, lines)
    assert "Traceback" not in lines[0] and "\n" not in lines[0]


@pytest.mark.slow
@settings(max_examples=12, deadline=None)
@given(st.data())
def test_a_wrong_value_for_any_key_is_refused_in_one_line_naming_it(data: st.DataObject) -> None:
    command, key, _, value = data.draw(st.sampled_from(key_cases()[0]))  # all of them: the long test
    assert_refused_in_one_line(command, key, value)


@pytest.mark.long
def test_every_key_of_every_command_refuses_a_wrong_type_and_an_out_of_range_value() -> None:
    failures = []
    for command, key, kind, value in key_cases()[0]:
        try:
            assert_refused_in_one_line(command, key, value)
        except (AssertionError, Exception) as error:  # every failure listed, not only the first
            failures.append(f"{command} {key}={value} ({kind}): {str(error)[:200]}")
    assert not failures, "\n".join(failures)


@pytest.mark.slow
def test_the_keys_no_check_covers_are_those_passed_on_unchecked() -> None:
    """The composed keys with no type or rule: other libraries' arguments that textclf hands on as they are
    (the loggers', the search space, peft's target_modules, datasets' data_files, Lightning's strategy)."""
    open_prefixes = ("logger.", "hparams_search.params.")
    passed_on = {"model.net.lora.target_modules", "data.data_files", "trainer.strategy"}
    for command, keys in key_cases()[1].items():
        unexplained = [key for key in keys if not key.startswith(open_prefixes) and key not in passed_on]
        assert not unexplained, (command, unexplained)
