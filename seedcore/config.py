"""The run-config base class every trainer's config derives from, and the pieces of its validation.

A trainer's config is a dataclass deriving from `RunConfig`: every field has a type and a one-line docstring (the
string under it, which `describe_fields` turns into CLI help); `from_dict` builds and validates it at the edge
(unknown keys and wrong types are errors naming the key and the source); `to_dict` gives plain types that
survive YAML, JSON and MLflow params. Imports no torch, so validating a sweep stays cheap.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import inspect
import math
import re
import reprlib
import typing
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any, ClassVar, Self

import yaml

SEED_MAX = 2**64 - 1
"""The largest seed every generator a run seeds accepts: torch.manual_seed takes at most 2**64 - 1 (random.seed,
NumPy's default_rng([seed, i]) and np.random.seed(seed % 2**32) take any integer >= 0)."""
SEED_FIELDS = ("seed", "init_seed", "data_seed")
"""The seed fields every trainer's config has: `seed`, and the two that split it (see RunConfig.run_seeds)."""
INT_MAX = 2**31 - 1
"""The largest value of any other integer field (counts, lengths, steps): beyond it torch and NumPy overflow."""
MAX_CONFIG_BYTES = 1_000_000
"""A config file is a few kilobytes; a larger one is the wrong file."""
MAX_YAML_VALUES = 10_000
"""A config is a few dozen keys. YAML aliases (`*name`) repeat a value without writing it out, so a few lines can
expand to a billion values ("billion laughs"); a file whose values, aliases expanded, exceed this is refused."""
MAX_YAML_DEPTH = 50
"""A config nests a few levels; PyYAML's scanner slows with the square of the depth (3000 levels: seconds)."""
QUOTE_CHARS = 80
"""The most characters of a given value an error message quotes."""


class ConfigError(ValueError):
    """Bad run configuration: the message names the key, the source and the fix."""


_quote = reprlib.Repr()
# Bounded work as well as bounded length: repr() of a value built from YAML aliases can be gigabytes long.
_quote.maxlevel, _quote.maxdict, _quote.maxlist, _quote.maxtuple = 3, 4, 6, 6
_quote.maxstring = _quote.maxother = _quote.maxlong = QUOTE_CHARS


def quote(value: Any) -> str:
    """repr(value) for an error message: at most QUOTE_CHARS characters, however large or nested the value."""
    try:
        text = _quote.repr(value)
    except ValueError:  # an integer with more digits than Python converts to text
        return f"<an integer of {value.bit_length()} bits>" if isinstance(value, int) else "<a value too large>"
    return text if len(text) <= QUOTE_CHARS else text[: QUOTE_CHARS - 3] + "..."


def clip(text: str, limit: int = QUOTE_CHARS) -> str:
    """`text` cut to `limit` characters (a key name or a library's message inside ours)."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


Need = Callable[[bool, str, str, str], None]


def need_for(source: str) -> Need:
    """`need(ok, key, problem, fix)`, which raises ConfigError "{source}: `key` problem; fix." unless ok."""

    def need(ok: bool, key: str, problem: str, fix: str) -> None:
        if not ok:
            raise ConfigError(f"{source}: `{key}` {clip(problem, 4 * QUOTE_CHARS)}; {fix}.")

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
        self.check_numbers(need_for("config"))
        self.validate()

    def check_numbers(self, need: Need) -> None:
        """Every number is one the run can use: floats finite, integers within INT_MAX, the seed within what
        every generator accepts. Ranges of single fields are the subclass's `validate`."""
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            values = value if isinstance(value, tuple) else (value,)
            for number in (v for v in values if isinstance(v, int | float) and not isinstance(v, bool)):
                if field.name in SEED_FIELDS:
                    need(0 <= number <= SEED_MAX, field.name, f"is {quote(number)}", "use an integer in [0, 2**64 - 1]")
                elif isinstance(number, float):
                    need(math.isfinite(number), field.name, f"is {number}", "use a finite number")
                else:
                    need(abs(number) <= INT_MAX, field.name, f"is {quote(number)}", f"use at most {INT_MAX}")

    def run_seeds(self) -> tuple[int, int]:
        """(init seed, data seed): `init_seed` decides the initial weights, `data_seed` every other random draw
        (examples, curriculum, dropout, gradient noise, exploration, evaluation inputs); each is `seed` when unset,
        so a config that sets neither runs exactly as one `seed` always did (seedcore.loop.seed_everything)."""
        init_seed, data_seed = self.init_seed, self.data_seed
        return (self.seed if init_seed is None else init_seed, self.seed if data_seed is None else data_seed)

    def apply_recipe(self) -> None:
        """Fill fields left None from the chosen variant's recipe (nothing to fill by default)."""

    def validate(self, source: str = "config") -> None:
        raise NotImplementedError

    def validate_run(self, need: Need) -> None:
        """The rules every trainer's budgets and runtime fields share."""
        budget = getattr(self, self.step_budget)
        check_ranges(need, self, {"max_minutes": "[0, 525600]"})  # a year
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
            f"is {quote(self.device)}",
            "use auto, cpu, cuda or cuda:N",
        )
        need(self.threads >= 1, "threads", f"is {self.threads}", "use at least 1")

    def to_dict(self) -> dict[str, Any]:
        """Plain types only (lists, not tuples) so the dict survives YAML, JSON and MLflow params."""
        # Fields hold plain values and tuples of them: no deep copy needed (asdict's is most of a sweep's expansion).
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {key: list(value) if isinstance(value, tuple) else value for key, value in out.items()}

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
        unknown = sorted(set(values) - set(known), key=str)
        if unknown:
            name = str(unknown[0])
            close = difflib.get_close_matches(name, known, n=3)
            hint = f"did you mean {' or '.join(f'`{k}`' for k in close)}? " if close else ""
            raise ConfigError(f"{source}: unknown key `{clip(name)}`; {hint}Every key is listed by `{cls.cli} --help`.")
        hints = field_types(cls)
        values = cls.normalise(dict(values))
        converted = {key: coerce(key, value, hints[key], source) for key, value in values.items()}
        try:
            return cls(**converted)
        except ConfigError as exc:  # __post_init__ validated under the generic name: name the real source
            raise ConfigError(f"{source}:{str(exc).removeprefix('config:')}") from None

    def replace(self, **changes: Any) -> Self:
        return type(self).from_dict({**self.to_dict(), **changes})


@functools.cache
def field_types(config_cls: type) -> dict[str, Any]:
    """Field name -> type of a config class (typing.get_type_hints, once per class: it parses every annotation)."""
    return typing.get_type_hints(config_cls)


OVERFLOW_SAFE = 1e30
"""Upper bound of the fields a run may push to extremes on purpose (a learning rate or init scale that makes it
diverge, recorded as `diverged`, which the fault tests rely on; a clip norm that turns clipping off): past
float32's range (3.4e38) the optimiser's first step fails instead (lr: 1e300)."""


def check_ranges(need: Need, config: Any, ranges: dict[str, str]) -> None:
    """Each field in `ranges` lies in its interval, written as in the docs: `(0, 10]` excludes 0 and includes 10.
    NaN is in no interval. The trainers' ranges lie far past any sensible value (see OVERFLOW_SAFE)."""
    for key, interval in ranges.items():
        low_bracket, low, high, high_bracket = re.fullmatch(r"([(\[])(\S+), (\S+)([)\]])", interval).groups()
        value = getattr(config, key)
        above = value > float(low) if low_bracket == "(" else value >= float(low)
        below = value < float(high) if high_bracket == ")" else value <= float(high)
        need(above and below, key, f"is {value}", f"use a number in {interval}")


def coerce(key: str, value: Any, hint: Any, source: str) -> Any:
    """Check one value against its field type; ints are accepted for floats, nothing else is converted."""

    def wrong(expected: str) -> ConfigError:
        return ConfigError(f"{source}: `{key}` should be {expected}, got {quote(value)} ({type(value).__name__}).")

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


class SafeLoader(yaml.SafeLoader):
    """yaml.SafeLoader that stops at MAX_YAML_DEPTH levels of nesting, before scanning deeper."""

    depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        self.depth += 1
        try:
            if self.depth > MAX_YAML_DEPTH:
                raise yaml.composer.ComposerError(
                    None, None, f"values nested more than {MAX_YAML_DEPTH} levels deep", self.peek_event().start_mark
                )
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def load_yaml(path: str | Path, loader: type[SafeLoader] = SafeLoader) -> dict[str, Any]:
    """Read a YAML mapping with a safe loader; errors name the file. Refused before anything is built from it: a
    file that is not UTF-8 text, one over MAX_CONFIG_BYTES, and aliases that expand past MAX_YAML_VALUES."""
    path = Path(path)
    text = read_text(path)
    try:
        document = loader(text)  # its reader refuses control characters here
        try:
            node = document.get_single_node()
            if node is not None:
                check_expansion(node, path)
            values = document.construct_document(node) if node is not None else None
        finally:
            document.dispose()
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({yaml_problem(exc)}); fix the syntax there.") from None
    except ConfigError:
        raise
    except RecursionError:
        raise ConfigError(f"{path}: the YAML is nested too deeply to read; a config nests a few levels.") from None
    except ValueError as exc:  # PyYAML's int() of a number longer than Python converts (4300 digits)
        raise ConfigError(f"{path}: a value cannot be read ({clip(str(exc))}); shorten the number.") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys at the top level, got {type(values).__name__}.")
    return values


def yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's error on one line: what it expected, what it found, and where (its own text draws a caret)."""
    if not isinstance(exc, yaml.MarkedYAMLError):
        return clip(" ".join(str(exc).split()), 4 * QUOTE_CHARS)
    mark = exc.problem_mark
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    return clip(" ".join(part for part in (exc.context, exc.problem) if part), 4 * QUOTE_CHARS) + where


BINARY_SIGNATURES = {
    b"\x89PNG": "a PNG image",
    b"\x1f\x8b": "gzip data",
    b"PK\x03\x04": "a zip archive",
    b"\x7fELF": "an executable",
    b"\x80": "a Python pickle or other binary data",
}


def read_text(path: Path) -> str:
    """The file as text; a missing, huge or binary file is a ConfigError that says so."""
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc.strerror}); check the path.") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{path}: the file is larger than {MAX_CONFIG_BYTES:,} bytes, and a config is a few kilobytes of YAML; "
            "check the path."
        )
    kind = next((name for magic, name in BINARY_SIGNATURES.items() if data.startswith(magic)), None)
    kind = f"it looks like {kind}" if kind else "binary data, or text in another encoding such as Latin-1"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not a text file (byte {data[exc.start]:#04x} at offset {exc.start} is not UTF-8: {kind}); a "
            "config is YAML text saved as UTF-8, so check the path or save the file as UTF-8."
        ) from None
    if "\x00" in text:
        raise ConfigError(
            f"{path}: not a text file (it holds NUL bytes, the first at offset {text.index(chr(0))}: {kind}); a "
            "config is YAML text saved as UTF-8, so check the path."
        )
    return text


def check_expansion(root: yaml.Node, path: Path) -> None:
    """Refuse a document whose values, with every alias expanded, number more than MAX_YAML_VALUES, or whose alias
    refers to a collection that contains it. Counts each distinct node once (memo), so a billion-laughs file is
    measured in microseconds without being expanded."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:
            raise ConfigError(
                f"{path}: line {node.start_mark.line + 1}: a YAML alias refers to the collection that contains it, "
                "so the value is infinite; write the value out."
            )
        open_nodes.add(key)
        if isinstance(node, yaml.MappingNode):
            total = 1 + sum(size(k) + size(v) for k, v in node.value)
        elif isinstance(node, yaml.SequenceNode):
            total = 1 + sum(size(child) for child in node.value)
        else:
            total = 1
        open_nodes.discard(key)
        sizes[key] = total
        return total

    if size(root) <= MAX_YAML_VALUES:
        return
    where = "the file"
    if isinstance(root, yaml.MappingNode):  # name the top-level key that expands the most
        key_node, _ = max(root.value, key=lambda item: sizes[id(item[1])])
        where = f"`{clip(str(key_node.value))}`" if isinstance(key_node, yaml.ScalarNode) else where
    raise ConfigError(
        f"{path}: {where} expands to {size(root):,} values through YAML aliases (`*name`), more than the "
        f"{MAX_YAML_VALUES:,} a config may hold (a 'billion laughs' file?); write the values out instead of "
        "nesting aliases."
    )


def describe_fields(config_cls: type) -> dict[str, str]:
    """Field name -> its one-line docstring (the string under each field of the config dataclass)."""
    source = inspect.getsource(config_cls)
    docs = dict(re.findall(r"^\s{4}(\w+): [^\n]*\n\s{4}\"\"\"(.*?)\"\"\"", source, flags=re.M | re.S))
    return {f.name: docs.get(f.name, "") for f in dataclasses.fields(config_cls)}


def first_difference(a: dict[str, Any], b: dict[str, Any], ignore: Collection[str] = ()) -> str | None:
    """The first key of `a` whose value differs in `b`, outside `ignore` (two configs' `to_dict()`); None if none."""
    return next((key for key, value in a.items() if key not in ignore and value != b[key]), None)
