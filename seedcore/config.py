"""The run-config base class every trainer's config derives from, and the pieces of its validation.

A trainer's config is a dataclass deriving from `RunConfig`: every field has a type and a one-line docstring (the
string under it, which `describe_fields` turns into CLI help); `from_dict` builds and validates it at the edge
(unknown keys and wrong types are errors naming the key and the source); `to_dict` gives plain types that
survive YAML, JSON and MLflow params. Imports no torch, so validating a sweep stays cheap.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import re
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Self

import yaml


class ConfigError(ValueError):
    """Bad run configuration: the message names the key, the source and the fix."""


Need = Callable[[bool, str, str, str], None]


def need_for(source: str) -> Need:
    """`need(ok, key, problem, fix)`, which raises ConfigError "{source}: `key` problem; fix." unless ok."""

    def need(ok: bool, key: str, problem: str, fix: str) -> None:
        if not ok:
            raise ConfigError(f"{source}: `{key}` {problem}; {fix}.")

    return need


class RunConfig:
    """Base of one trainer's run config (subclasses are dataclasses). The class attributes say how that trainer
    counts: its step budget field (also its stop reason), its patience field and the unit they count in."""

    cli: ClassVar[str] = ""
    """The trainer's command line, named in errors ("see `python -m X --help`")."""
    step_budget: ClassVar[str] = "max_steps"
    patience: ClassVar[str] = "patience_steps"
    step_unit: ClassVar[str] = "step"

    def __post_init__(self) -> None:
        self.apply_recipe()
        self.validate()

    def apply_recipe(self) -> None:
        """Fill fields left None from the chosen variant's recipe (nothing to fill by default)."""

    def validate(self, source: str = "config") -> None:
        raise NotImplementedError

    def validate_run(self, need: Need) -> None:
        """The rules every trainer's budgets and runtime fields share."""
        budget = getattr(self, self.step_budget)
        need(
            budget > 0 or self.max_minutes > 0,
            self.step_budget,
            "and max_minutes are both 0, so the run would never end",
            f"set a{'n' if self.step_unit[0] in 'aeiou' else ''} {self.step_unit} or minute budget",
        )
        for key in ("report_every", "checkpoint_every"):
            need(getattr(self, key) >= 1, key, f"is {getattr(self, key)}", "use a positive integer")
        need(
            re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device) is not None,
            "device",
            f"is {self.device!r}",
            "use auto, cpu, cuda or cuda:N",
        )
        need(self.threads >= 1, "threads", f"is {self.threads}", "use at least 1")

    def to_dict(self) -> dict[str, Any]:
        """Plain types only (lists, not tuples) so the dict survives YAML, JSON and MLflow params."""
        out = dataclasses.asdict(self)
        for key, value in out.items():
            if isinstance(value, tuple):
                out[key] = list(value)
        return out

    @classmethod
    def normalise(cls, values: dict[str, Any]) -> dict[str, Any]:
        """Rewrite values that YAML spells differently from the field type (none by default)."""
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> Self:
        """Build and validate a config; unknown keys and wrong types raise ConfigError naming key and source."""
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: expected a mapping of config keys, got {type(values).__name__}.")
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError(
                f"{source}: unknown key `{unknown[0]}`; known keys are {', '.join(known)} (see `{cls.cli} --help`)."
            )
        hints = typing.get_type_hints(cls)
        values = cls.normalise(dict(values))
        converted = {key: coerce(key, value, hints[key], source) for key, value in values.items()}
        try:
            return cls(**converted)
        except ConfigError as exc:  # __post_init__ validated under the generic name: name the real source
            raise ConfigError(f"{source}:{str(exc).removeprefix('config:')}") from None

    def replace(self, **changes: Any) -> Self:
        return type(self).from_dict({**self.to_dict(), **changes})


def check_positive(need: Need, config: Any, keys: tuple[str, ...]) -> None:
    """Each of `keys` is a finite number > 0."""
    for key in keys:
        value = getattr(config, key)
        need(math.isfinite(value) and value > 0, key, f"is {value}", "use a positive number")


def coerce(key: str, value: Any, hint: Any, source: str) -> Any:
    """Check one value against its field type; ints are accepted for floats, nothing else is converted."""

    def wrong(expected: str) -> ConfigError:
        return ConfigError(f"{source}: `{key}` should be {expected}, got {value!r} ({type(value).__name__}).")

    if hint is bool:
        if not isinstance(value, bool):
            raise wrong("true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong("an integer")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise wrong("a number")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise wrong("a string")
        return value
    if type(None) in typing.get_args(hint):  # X | None: None means "the model's default"
        if value is None:
            return None
        (inner,) = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        return coerce(key, value, inner, source)
    if typing.get_origin(hint) is tuple:
        element = typing.get_args(hint)[0]
        if not isinstance(value, list | tuple) or any(isinstance(v, bool) or not isinstance(v, element) for v in value):
            raise wrong(f"a list of {'integers' if element is int else 'strings'}")
        return tuple(value)
    raise TypeError(f"no coercion for field type {hint!r}")  # a programming error, not bad input


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping with safe_load; errors name the file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc.strerror}); check the path.") from None
    try:
        values = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc}); fix the syntax at the position shown.") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys at the top level, got {type(values).__name__}.")
    return values


def describe_fields(config_cls: type) -> dict[str, str]:
    """Field name -> its one-line docstring (the string under each field of the config dataclass)."""
    source = inspect.getsource(config_cls)
    docs = dict(re.findall(r"^\s{4}(\w+): [^\n]*\n\s{4}\"\"\"(.*?)\"\"\"", source, flags=re.M | re.S))
    return {f.name: docs.get(f.name, "") for f in dataclasses.fields(config_cls)}
