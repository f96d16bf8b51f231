"""A composed config checked against its schemas (`textclf.schema`) before any work: keys that are missing,
values their rule refuses, settings that contradict each other; and Hydra's own composition errors (a wrong
type, an unknown key, an unknown config) said as one line each: `<key>: <what is wrong> (<what is allowed>)`.

Nothing here knows a command: every config composed from `textclf.conf` is checked the same way.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import typing
from collections.abc import Iterator
from typing import Any

from hydra.errors import MissingConfigException
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from textclf.errors import SettingError, first_line
from textclf.schema import CONTRADICTIONS, Rule, rule_of

# keys that moved (CHANGELOG.md): the old name, and where the setting is now
RENAMED = {
    **{
        f"model.{key}": f"model.net.{key}"
        for key in (
            "pretrained",
            "dropout",
            "attention_dropout",
            "hidden_dropout",
            "freeze_embeddings",
            "fast_dropout",
            "skip_unused_tokens",
            "bf16_residual",
            "attn_implementation",
            "trust_remote_code",
        )
    },
    "model.pooling": "model.net.head",
    "callbacks.epoch_checkpoint": "callbacks.last_checkpoint",
    "callbacks.periodic_checkpoint": "callbacks.last_checkpoint",
    "callbacks.periodic_checkpoint.every_n_train_steps": "callbacks.last_checkpoint.every_n_train_steps",
}


class SettingsError(SettingError):
    """One or more settings that cannot work, one line each."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


def shown(value: Any) -> str:
    """A value as the user typed it: strings quoted, null as null."""
    return "null" if value is None else repr(value) if isinstance(value, str) else str(value)


def check_config(cfg: DictConfig) -> None:
    """Raise SettingsError listing every problem of a composed config (its `hydra` node aside)."""
    lines = [*missing_keys(cfg), *refused_values(cfg)]
    if not lines:  # settings that contradict each other, once each is fine alone
        lines = [line for check in CONTRADICTIONS if (line := check(cfg))]
    if lines:
        raise SettingsError(lines)


def checked(cfg: DictConfig) -> DictConfig:
    """A composed config checked (SettingsError), as a plain DictConfig (interpolations kept, struct): once
    checked it no longer needs its schemas, and `instantiate(node, extra=...)` can add arguments to a node
    that its schema does not declare (the number of labels, the label names)."""
    check_config(cfg)
    plain = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    OmegaConf.set_struct(plain, True)
    return plain


def children(node: DictConfig | ListConfig, prefix: str) -> Iterator[tuple[str, Any, str]]:
    """(key, key's full name, the child node) for each child of a node, the `hydra` node left out."""
    keys = range(len(node)) if isinstance(node, ListConfig) else node.keys()
    for key in keys:
        if not prefix and key == "hydra":
            continue
        yield key, f"{prefix}{key}", node._get_node(key)


def missing_keys(node: DictConfig | ListConfig, prefix: str = "") -> Iterator[str]:
    """`???` values (mandatory keys not set), with what the key takes."""
    for key, full_key, child in children(node, prefix):
        if OmegaConf.is_missing(node, key):
            rule = rule_of(OmegaConf.get_type(node), str(key)) if isinstance(node, DictConfig) else None
            yield f"{full_key}: missing ({rule.allowed if rule else 'set it on the command line'}: {full_key}=…)"
        elif isinstance(child, (DictConfig, ListConfig)) and not child._is_none() and not child._is_interpolation():
            yield from missing_keys(child, f"{full_key}.")


def refused_values(node: DictConfig, prefix: str = "") -> Iterator[str]:
    """Values the rule of their schema field refuses (nodes typed by a schema dataclass, recursively)."""
    schema = OmegaConf.get_type(node)
    for key, full_key, child in children(node, prefix):
        if OmegaConf.is_missing(node, key):
            continue
        if isinstance(child, DictConfig) and not child._is_none() and not child._is_interpolation():
            yield from refused_values(child, f"{full_key}.")
            continue
        rule = rule_of(schema, str(key))
        if rule is None or child._is_interpolation():  # `${data.task}` is checked where it points
            continue
        try:
            value = node[key]
        except OmegaConfBaseException as error:
            yield f"{full_key}: cannot be resolved: {first_line(error)}"
            continue
        value = OmegaConf.to_container(value, resolve=True) if isinstance(value, (DictConfig, ListConfig)) else value
        if not (value is None and rule.optional) and not rule.test(value):
            yield f"{full_key}: {shown(value)} is {rule.wrong} ({rule.allowed})"


TYPE_NAMES = {int: "a whole number", float: "a number", bool: "true or false", str: "a string"}


def kind_of(schema: Any, key: str) -> str:
    """What a schema field's type takes, in words ("a whole number"); a mapping for a nested schema."""
    try:
        wanted = typing.get_type_hints(schema)[key]
    except (KeyError, TypeError, NameError):
        return "another value"
    wanted = next((arg for arg in typing.get_args(wanted) if arg is not type(None)), wanted)
    return TYPE_NAMES.get(wanted, "a mapping of settings" if dataclasses.is_dataclass(wanted) else "another value")


def composition_error_line(error: Exception, keys: list[str]) -> str:
    """Hydra's error while composing a config (a wrong type or an unknown key in an override or a YAML file,
    a config that does not exist) as one line; `keys`: the keys a config has, for the nearest-key hint."""
    cause = error.__cause__ if isinstance(error.__cause__, OmegaConfBaseException) else error
    if isinstance(cause, ValidationError) and getattr(cause, "full_key", None):
        return type_error_line(cause)
    if isinstance(cause, (ConfigKeyError, AttributeError)) and getattr(cause, "full_key", None):
        return unknown_key_line(str(cause.full_key), keys)
    if isinstance(error, MissingConfigException):
        return missing_config_line(error)
    line = first_line(error)  # e.g. an override Hydra cannot parse, or `+key=` for a key the config has
    if line.startswith("Error merging override "):  # a mapping given for a list, or a list for a mapping
        key, _, value = line.removeprefix("Error merging override ").partition("=")
        return f"{key}: {value} is not the kind of value it holds (a value like its default)"
    return line


def type_error_line(cause: ValidationError) -> str:
    """`model.lr: 'abc' is not a number (a number > 0)`: the field's type, and its rule if it has one."""
    kind = kind_of(cause.object_type, str(cause.key))
    rule: Rule | None = rule_of(cause.object_type, str(cause.key)) if cause.object_type else None
    value = getattr(cause, "value", None)
    return f"{cause.full_key}: {shown(value)} is not {kind} ({rule.allowed if rule else kind})"


def unknown_key_line(key: str, keys: list[str]) -> str:
    """`model.pretrained: no such key; did you mean model.net.pretrained? (...)`."""
    if key in RENAMED:
        return f"{key}: no such key; did you mean {RENAMED[key]}? (it moved there, CHANGELOG.md)"
    nearest = nearest_key(key, keys)
    hint = f"; did you mean {nearest}?" if nearest else ""
    return f"{key}: no such key{hint} (a key the config lacks is added with +{key}=…)"


def nearest_key(key: str, keys: list[str]) -> str | None:
    """The known key most like `key`: the same last name elsewhere, else the closest spelling."""
    name = key.rsplit(".", 1)[-1]
    same_name = [known for known in keys if known.rsplit(".", 1)[-1] == name]
    if same_name:
        return min(same_name, key=len)
    close = difflib.get_close_matches(key, keys, n=1, cutoff=0.6)
    return close[0] if close else None


def missing_config_line(error: MissingConfigException) -> str:
    """`data=nope`: which group, and the configs it has."""
    text = str(error)
    group = re.search(r"Could not find '([^/']+)/([^']+)'", text)
    options = re.findall(r"^\t(\S+)$", text, flags=re.MULTILINE)
    if group:
        return f"{group.group(1)}: no config '{group.group(2)}' ({', '.join(options) or 'see conf/' + group.group(1)})"
    return first_line(error)


def all_keys(cfg: DictConfig, prefix: str = "") -> list[str]:
    """Every dotted key of a config (the `hydra` node left out), for the nearest-key hint."""
    keys = []
    for _, full_key, child in children(cfg, prefix):
        keys.append(full_key)
        if isinstance(child, DictConfig) and not child._is_none() and not child._is_interpolation():
            keys += all_keys(child, f"{full_key}.")
    return keys
