"""How a config group declares its schema: a dataclass whose fields give each key's type and, where a type
says too little, its rule (a range, a set of choices), registered in Hydra's ConfigStore as `schema/<name>`.

A YAML file names its schema first in its defaults list (`defaults: [/schema/data@_here_, _self_]`), so Hydra
checks every key's name and type while it composes; `textclf.validation` then checks the rules and the
settings that contradict each other, before any work. The fields carry no defaults (`MISSING`): the values
users read and change stay in the YAML files.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

# the group under which every schema is stored: `/schema/<name>@_here_` in a defaults list
SCHEMA_GROUP = "schema"


@dataclass(frozen=True)
class Rule:
    """What a value must be beyond its type: `test` says whether it is, `allowed` says it to the user."""

    allowed: str
    test: Callable[[Any], bool]
    wrong: str = "out of range"
    optional: bool = False  # null is allowed too


def setting(rule: Rule | None = None, default: Any = MISSING, factory: Callable[[], Any] | None = None) -> Any:
    """A schema field: no default (the YAML file gives it) unless `default` or `factory` is given."""
    metadata = {"rule": rule} if rule is not None else {}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def rule_of(schema: type, key: str) -> Rule | None:
    """The rule of a schema's field, or None."""
    if not dataclasses.is_dataclass(schema):
        return None
    field = next((field for field in dataclasses.fields(schema) if field.name == key), None)
    return field.metadata.get("rule") if field is not None else None


def is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def is_whole(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def one_of(choices: Iterable[Any], optional: bool = False) -> Rule:
    """One of `choices` (null too if `optional`)."""
    names = tuple(choices)
    shown = ", ".join(str(name) for name in names) + (", or null" if optional else "")
    return Rule(shown, lambda value: value in names, wrong="not a choice", optional=optional)


def whole(low: int, high: int | None = None, optional: bool = False, note: str = "", unit: str = "") -> Rule:
    """A whole number (of `unit`) in [low, high]; `note` says what null means (optional) or a special value."""
    span = f"≥ {low}" if high is None else f"from {low} to {high}"
    tail = (f", or null: {note}" if note else ", or null") if optional else (f"; {note}" if note else "")
    return Rule(
        f"a whole number{' of ' + unit if unit else ''} {span}{tail}",
        lambda value: is_whole(value) and low <= value <= (high if high is not None else value),
        optional=optional,
    )


def number(
    low: float, high: float | None = None, low_open: bool = False, high_open: bool = False, optional: bool = False
) -> Rule:
    """A number between `low` and `high`, each end included unless open."""

    def test(value: Any) -> bool:
        if not is_number(value) or value < low or (low_open and value == low):
            return False
        return high is None or value < high or (value == high and not high_open)

    if high is None:
        allowed = f"a number {'>' if low_open else '≥'} {low:g}"
    else:
        allowed = f"a number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    return Rule(allowed + (", or null" if optional else ""), test, optional=optional)


def either(allowed: str, *rules: Rule, optional: bool = False) -> Rule:
    """A value any one of `rules` allows."""
    return Rule(allowed, lambda value: any(rule.test(value) for rule in rules), wrong="not allowed", optional=optional)


FRACTION = number(0, 1, high_open=True)  # a share of something: 0 included, the whole excluded
PROBABILITY = number(0, 1)
POSITIVE = whole(1)

# a check of settings that contradict each other: the composed config in, a line naming both keys out (or None)
Contradiction = Callable[[Mapping[str, Any]], "str | None"]
CONTRADICTIONS: list[Contradiction] = []


def contradiction(check: Contradiction) -> Contradiction:
    """Register a check of settings that contradict each other (run on every composed config)."""
    CONTRADICTIONS.append(check)
    return check


def selected(cfg: Mapping[str, Any], key: str) -> Any:
    """The value at a dotted `key` of a composed config, None where the config has no such key."""
    return OmegaConf.select(cfg, key, default=None)


def register(name: str, schema: type) -> None:
    """Store `schema` as `schema/<name>`, for the YAML files that name it in their defaults list."""
    ConfigStore.instance().store(group=SCHEMA_GROUP, name=name, node=schema)
