"""Hydra-style overrides of a sweep file on the command line, e.g.

    python -m sweeps run big_models budget.steps=2000 axes.science.width=[24,64] axes.nuisance.seed.stop=2

Each override is `dotted.path=value`. The value is read as YAML (`2000` an integer, `0.2` a float, `mul` a string,
`[24, 64]` a list, `{start: 0, stop: 2}` a mapping, `null` nothing), and set at that path of the file's values
before they are validated, so an overridden sweep is checked exactly like a file that says the same. `key=null` means
what `key: null` in the file means: an optional section or value is unset (`stopping=null` turns off the
hopeless-seed rule, `budget.minutes=null` drops the time budget); a required one is then reported missing. A
leading `+` (Hydra's "add a key") is accepted and changes nothing: any key the schema knows may be set, whether
the file has it or not. `~path` (Hydra's "delete") takes a key out of the file, so its default applies: `~base.task
axes.science.task=[add,mul]` turns a shared value into an axis. Paths are checked against the schema first, so a
typo names the keys allowed there.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import shlex
import typing
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import BaseModel

from seedcore.config import SEED_FIELDS, SafeLoader, clip, quote
from sweeps.schema import Axes, SweepConfig, SweepConfigError, axis_fields

NOTHING_DONE = "Nothing was launched or recorded."


@dataclass(frozen=True)
class Override:
    text: str
    """As given on the command line (the record keeps it)."""
    path: tuple[str, ...]
    value: Any
    remove: bool = False
    """`~path`: the key is taken out of the file (its default applies), e.g. `~base.task` to make it an axis."""

    @property
    def key(self) -> str:
        return ".".join(self.path)


def parse_override(text: str) -> Override:
    """`budget.steps=2000` -> Override(path=('budget', 'steps'), value=2000); `~base.task` -> a removal."""
    if text.startswith("~"):
        path = tuple(text[1:].split("."))
        if "=" in text or not all(part.strip() for part in path):
            raise SweepConfigError(f"{quote(text)}: a removal is `~dotted.key`, e.g. `~base.task`. {NOTHING_DONE}")
        return Override(text=text, path=tuple(part.strip() for part in path), value=None, remove=True)
    key, sep, raw = text.removeprefix("+").partition("=")
    path = tuple(key.split("."))
    if not sep or not all(part.strip() for part in path):
        raise SweepConfigError(
            f"{quote(text)} is not an override; write `dotted.key=value`, e.g. `budget.steps=2000` or "
            f"`axes.science.width=[24,64]`. {NOTHING_DONE}"
        )
    if not raw.strip():
        raise SweepConfigError(
            f"override `{clip(text)}` gives no value; write one after `=` (`null` unsets an optional key). "
            + NOTHING_DONE
        )
    try:
        value = yaml.load(raw, Loader=SafeLoader)  # noqa: S506 - the project's SafeLoader (yaml.SafeLoader, depth-bound)
    except yaml.YAMLError as exc:
        problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
        raise SweepConfigError(
            f"override `{clip(text)}`: the value is not YAML ({clip(problem)}); quote text with spaces or brackets, "
            f"e.g. `{key}='[a b]'`. {NOTHING_DONE}"
        ) from None
    return Override(text=text, path=tuple(part.strip() for part in path), value=value)


def parse_overrides(texts: list[str]) -> list[Override]:
    return [parse_override(text) for text in texts]


def label(source: str, overrides: list[Override]) -> str:
    """What errors name as the source: the file, and the overrides that changed it."""
    if not overrides:
        return source
    return f"{source} with {clip(shlex.join(o.text for o in overrides), 240)}"


def apply_overrides(values: dict[str, Any], overrides: list[Override], run_fields: RunFields | None) -> dict[str, Any]:
    """The file's values with each override set in turn (a copy; later overrides win). Missing sections are
    created; a path through a value that is not a mapping is refused with the way to set it whole. `run_fields`:
    the trainer's run-config fields, for checking `base.*` and axis names (None: the trainer is unknown, and the
    schema reports it)."""
    out = copy.deepcopy(values)
    for override in overrides:
        check_path(override, run_fields)
        node = out
        for depth, part in enumerate(override.path[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                where = ".".join(override.path[: depth + 1])
                raise SweepConfigError(
                    f"override `{clip(override.text)}`: `{clip(where)}` is {quote(child)} in the file, not a mapping; "
                    f"set it whole, e.g. {_whole_example(where)}. {NOTHING_DONE}"
                )
            node = child
        if override.remove:
            node.pop(override.path[-1], None)
        else:
            node[override.path[-1]] = override.value
    return out


def _whole_example(where: str) -> str:
    if where.removeprefix("axes.nuisance.") in SEED_FIELDS:
        return f"`{where}=[0,1]` or `{where}={{start: 0, stop: 2}}`"
    return f"`{clip(where)}=<value>`"


def check_path(override: Override, run_fields: RunFields | None) -> None:
    """Refuse a path the schema does not have, naming the keys allowed at that level."""
    path, model = override.path, SweepConfig
    for depth, part in enumerate(path):
        here = path[: depth + 1]
        if model is None:
            _fail(
                override,
                f"`{_join(path[:depth])}` is a single value, not a mapping; set it as `{_join(path[:depth])}=...`",
            )
        if part not in model.model_fields:
            _unknown(override, here, list(model.model_fields))
        if part == "base" and model is SweepConfig:
            return _check_run_field(override, path[depth + 1 :], here, run_fields)
        if model is Axes:
            return _check_axes(override, path[depth + 1 :], here, run_fields)
        if typing.get_origin(model.model_fields[part].annotation) is dict:
            return  # a free mapping other than `base`: its keys are the schema's to judge
        model = _section(model, part)


def _check_run_field(
    override: Override, rest: tuple[str, ...], where: tuple[str, ...], fields: RunFields | None
) -> None:
    """`base.<run field>`: one field of the trainer's run config, set whole."""
    if not rest:
        return
    if fields is not None and rest[0] not in fields.names:
        _unknown(override, (*where, rest[0]), fields.names, fields.listed_by)
    if len(rest) > 1:
        _fail(
            override,
            f"`{_join((*where, rest[0]))}` is one run field; set it whole, e.g. `{_join((*where, rest[0]))}=...`",
        )


def _check_axes(override: Override, rest: tuple[str, ...], where: tuple[str, ...], fields: RunFields | None) -> None:
    """`axes.<science|nuisance>.<axis>`, and `axes.nuisance.<seed|init_seed|data_seed>.<start|stop>`."""
    if not rest:
        return
    axis = rest[0]
    if fields is not None:
        for name in axis_fields(axis):
            if name not in fields.names:
                _unknown(override, (*where, name), fields.names, fields.listed_by)
    deeper = rest[1:]
    if not deeper:
        return
    if where[-1] == "nuisance" and axis in SEED_FIELDS and len(deeper) == 1:
        if deeper[0] not in ("start", "stop"):
            _unknown(override, (*where, axis, deeper[0]), ["start", "stop"])
        return
    _fail(
        override, f"`{_join((*where, axis))}` is a list of values; set it whole, e.g. `{_join((*where, axis))}=[...]`"
    )


def _section(model: type[BaseModel], part: str) -> type[BaseModel] | None:
    """The section model under `model.part`, or None when that key holds a plain value."""
    annotation = model.model_fields[part].annotation
    candidates = [annotation, *getattr(annotation, "__args__", ())]
    return next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)


def _unknown(override: Override, where: tuple[str, ...], known: list[str], listed_by: str = "") -> None:
    """`listed_by`: a command that lists the keys, given instead of the list when there are dozens (run fields)."""
    name = where[-1]
    close = difflib.get_close_matches(name, known, n=2)
    hint = f" (did you mean {' or '.join(f'`{k}`' for k in close)}?)" if close else ""
    level = f"under `{_join(where[:-1])}`" if len(where) > 1 else "at the top level"
    allowed = (
        f"every key allowed {level} is listed by `{listed_by}`"
        if listed_by
        else (f"the keys allowed {level} are {', '.join(known)}")
    )
    _fail(override, f"unknown key `{clip(_join(where))}`{hint}; {allowed}")


def _fail(override: Override, message: str) -> None:
    raise SweepConfigError(f"override `{clip(override.text)}`: {message}. {NOTHING_DONE}")


def _join(path: tuple[str, ...]) -> str:
    return ".".join(path)


@dataclass(frozen=True)
class RunFields:
    """The trainer's run-config fields, which `base.*` and the axes set."""

    names: list[str]
    listed_by: str
    """The command whose --help lists them."""

    @classmethod
    def of(cls, config_class: type) -> RunFields:
        return cls([f.name for f in dataclasses.fields(config_class)], f"{config_class.cli} --help")
