"""The sweep YAML: one typed, validated schema, documented here and nowhere else.

A sweep file is a short delta from the trainer's defaults, e.g.::

    name: width_study                 # MLflow experiment and storage folder
    trainer: neuralgpu
    base: {task: badd, max_length: 21}  # run-config fields shared by every trial (TrainConfig names)
    axes:
      science: {width: [12, 24]}      # what the pool compares: one summary cell per combination
      nuisance: {seed: {start: 0, stop: 8}}
    resources: {cpu: 1, gpu: 0}
    budget: {steps: 1000}
    success: {threshold: 0.01, length: 41}

Every trial's run config = trainer defaults <- `base` <- one value of each axis <- the fields that `budget`,
`success`, `stopping` and `resources` own. Those owned fields (neuralgpu: max_steps, max_minutes, success_*,
patience_steps, threads, device; rl: max_episodes, max_minutes, reward_threshold, eval_lengths,
patience_episodes, threads, device) and `seed` may only be set through their section, so each value has one
home. The run fields themselves are validated by the trainer's own config class (`neuralgpu.config.TrainConfig`,
`rl_tasks.config.RLConfig`), once per expanded trial; `sweeps/trainers.py` holds the mapping.

Trainer `rl` counts in episodes: `budget.steps` and `stopping.patience_steps` are episodes, and success is
gym's rule (see SuccessRule).

Refused before anything starts, with a message of a few lines at most that names the file, the key and the fix:
files that are not UTF-8 text or larger than 1 MB, YAML nested deeper than 50 levels or whose aliases (`*name`)
expand past 10,000 values (`seedcore.config.load_yaml`), NaN and infinities anywhere, seeds outside
[0, 2**64 - 1], pools of more than MAX_TRIALS trials, run fields outside their trainer's ranges (e.g. `lr` in
(0, 1e30]; `FLOAT_RANGES` in each trainer's config), and, for a local run, a trial larger than this machine.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from seedcore.config import SEED_FIELDS, SEED_MAX, SafeLoader, clip, quote

PACKAGE_DIR = Path(__file__).resolve().parent
CONFIG_DIR = PACKAGE_DIR / "configs"
SCHEMA_DOC = "sweeps/schema.py"
MAX_TRIALS = 10_000
"""The most trials one pool may have (and the most seeds in one seed range): expanding a pool validates every
trial's config (about a millisecond each), so a larger one is more likely a typo than a study."""


class SweepConfigError(ValueError):
    """A sweep config (or its request to the cluster) cannot run: the message names the file, key and fix."""


class Section(BaseModel):
    # strict: YAML "8" stays a string and is rejected where a number is expected, instead of being coerced.
    # allow_inf_nan: YAML's .nan and .inf are floats that no budget, rule or resource can use.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


class Axes(Section):
    """The values the pool ranges over; trials are the cartesian product of every axis."""

    science: dict[str, list[Any]] = {}
    """Axes the study compares (e.g. width, curriculum, task): field -> list of values. Each combination of
    science values is one cell of the summary table; its seeds are pooled into one success rate. Fields joined
    by `+` vary together instead of in a product: `model+width: [[f17, 96], [k15, 24]]` is two cells, each
    model at its own width."""
    nuisance: dict[str, list[Any]] = {}
    """Axes pooled within a cell (tuning playbook: nuisance hyperparameters). `seed` is required here, as a
    list of integers or {start, stop}; or, instead, both `init_seed` and `data_seed` (a crossed design that
    splits the seed into its sources, see RunConfig.run_seeds), given the same way."""

    def science_fields(self) -> list[str]:
        """The run fields the science axes set, joined axes split: the cell columns of the summary table."""
        return [field for axis in self.science for field in axis_fields(axis)]

    @field_validator("science", "nuisance", mode="before")
    @classmethod
    def _values_are_lists(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, dict):
            return value  # pydantic reports the wrong type
        out = dict(value)
        for field, values in value.items():
            if field in SEED_FIELDS and info.field_name == "nuisance":
                out[field] = values = seed_list(values, field)
            name = clip(str(field))
            if not isinstance(values, list):
                raise ValueError(
                    f"axis `{name}` is {quote(values)}, not a list; write the values as a list, e.g. "
                    f"`{name}: [{quote(values)}]`, or move a single value to `base`"
                )
            if not values:
                raise ValueError(f"axis `{name}` is an empty list; give at least one value or remove the axis")
            if not isinstance(field, str):
                return value  # pydantic reports the key that is not a string
            fields = axis_fields(field)
            if len(fields) > 1:
                if info.field_name != "science" or len(set(fields)) != len(fields) or not all(fields):
                    raise ValueError(
                        f"axis `{name}` joins fields with `+`; only a science axis may, each field once "
                        "(e.g. `model+width: [[f17, 96], [k15, 24]]`)"
                    )
                bad = next((v for v in values if not isinstance(v, list) or len(v) != len(fields)), None)
                if bad is not None:
                    raise ValueError(
                        f"axis `{name}` has the value {quote(bad)}; each value of a joined axis lists one value "
                        f"per field ({len(fields)}: {clip(', '.join(fields))}), e.g. "
                        f"`{name}: [{clip(str([f'<{f}>' for f in fields]))}]`"
                    )
            seen: set[str] = set()
            for v in values:  # by canonical text: values may be lists (joined axes, task curricula)
                text = json.dumps(v, sort_keys=True, default=repr)
                if text in seen:
                    raise ValueError(f"axis `{name}` lists {quote(v)} twice; give each value once")
                seen.add(text)
        return out


def axis_fields(axis: str) -> list[str]:
    """The run fields an axis sets: `width` -> [width]; a joined axis `model+width` -> [model, width]."""
    return [field.strip() for field in axis.split("+")]


def axis_setting(axis: str, value: Any) -> dict[str, Any]:
    """What one value of an axis sets: {width: 96}, or for `model+width` and [f17, 96] {model: f17, width: 96}."""
    fields = axis_fields(axis)
    return dict(zip(fields, value, strict=True)) if len(fields) > 1 else {axis: value}


def seed_list(values: Any, axis: str = "seed") -> Any:
    """Seeds as a list of integers in [0, SEED_MAX], from a list or a {start, stop} range (stop excluded)."""
    if isinstance(values, dict):
        unknown = set(values) - {"start", "stop"}
        if unknown or "stop" not in values:
            raise ValueError(
                f"axis `{axis}` is {quote(values)}; a seed range has the keys `start` (default 0) and `stop` "
                "(excluded), e.g. {start: 0, stop: 16}"
            )
        start, stop = values.get("start", 0), values["stop"]
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (start, stop)):
            raise ValueError(f"axis `{axis}` range {quote(values)} needs integer `start` and `stop`")
        if stop <= start:
            raise ValueError(f"axis `{axis}` range {quote(values)} is empty; `stop` (excluded) must exceed `start`")
        if stop - start > MAX_TRIALS:
            raise ValueError(
                f"axis `{axis}` range {quote(values)} has {stop - start:,} seeds, more than a pool may have "
                f"({MAX_TRIALS:,}); lower `stop`"
            )
        values = list(range(start, stop))
    if isinstance(values, list):
        bad = [v for v in values if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= SEED_MAX]
        if bad:
            raise ValueError(
                f"axis `{axis}` has {quote(bad[0])}; seeds are integers >= 0 and at most 2**64 - 1 (what "
                "torch.manual_seed accepts), e.g. {start: 0, stop: 16}"
            )
    return values


class Resources(Section):
    """What one trial asks the Ray cluster for. Checked against the cluster before anything starts."""

    cpu: Annotated[float, Field(gt=0, le=1024)] = 1
    """CPUs per trial, in (0, 1024]; also the trainer's torch threads (rounded down, at least 1), so a trial's
    numbers match a command-line run with the same `threads`."""
    gpu: Annotated[float, Field(ge=0, le=1024)] = 0
    """GPUs per trial, in [0, 1024]; a fraction < 1 packs several trials on one GPU (0.25 = four per GPU). Above 1
    it must be a whole number. gpu > 0 trains on `cuda`, gpu = 0 on `cpu`."""

    pack: Annotated[int, Field(ge=1, le=1024)] = 1
    """Seeds of one cell per trial process, trained as one grouped model (neuralgpu.packed: K15 models, memory
    plain, fp32); `cpu` and `gpu` are then the pack's. Each seed keeps its own trial key and MLflow run. 1: one
    seed per trial."""

    @field_validator("gpu")
    @classmethod
    def _whole_above_one(cls, value: float) -> float:
        if value > 1 and value != int(value):
            raise ValueError(f"gpu is {value}; above 1 Ray needs a whole number of GPUs (e.g. 1 or 2)")
        return value


class Budget(Section):
    """Per-trial budget; at least one of the two. A minutes budget makes the stopping step machine-dependent."""

    steps: Annotated[int, Field(ge=1)] | None = None
    """Training steps (neuralgpu: max_steps; rl: episodes, max_episodes)."""
    minutes: Annotated[float, Field(gt=0)] | None = None
    """Wall-time minutes (the trainer's max_minutes)."""

    @model_validator(mode="after")
    def _some_budget(self) -> Budget:
        if self.steps is None and self.minutes is None:
            raise ValueError("give `steps`, `minutes` or both; a trial without a budget never ends")
        return self


class SuccessRule(Section):
    """When a seed counts as a success (P16: sequence error below 1% at length 201, ever). Recorded as params
    on every trial so the analysis can re-judge a run from its evaluation curves.

    Trainer `rl` has one rule, gym's 'solved': `metric: reward_mean100` (required), success when the mean
    reward of the last 100 episodes reaches `threshold` (reward_threshold; 0 = each env's registered
    threshold); `length` is the input length of the held-out greedy test at the end of each trial
    (eval_lengths, logged as eval/seq_error@L), which does not decide success; `hold`, `confirm` and `gate` do
    not apply."""

    metric: str = "seq_error"
    """seq_error or digit_error (success_metric); reward_mean100 for trainer rl."""
    threshold: float
    """Success when the metric at `length` is below this (success_threshold); rl: the reward to reach."""
    length: int
    """Test length of the rule (success_length); rl: length of the final held-out test."""
    hold: Annotated[int, Field(ge=1)] = 1
    """Consecutive passing tests needed (success_hold; 1 = P16's 'ever below')."""
    confirm: Annotated[int, Field(ge=0)] = 0
    """Fresh examples of a confirmation test run when the rule first holds; success only if it passes too
    (success_confirm; 0 = none). Guards a small test's lucky pass at the cost of one larger test per pass."""
    gate: float | None = None
    """Run the test only once the training error at max_length is below this (success_gate; trainer default
    when unset)."""


class Stopping(Section):
    """Optional stopping of hopeless seeds by a deterministic rule of the trial itself, never by rank against
    other trials (ASHA/PBT would bias the per-seed statistics). A stopped trial records stop_reason
    `no_progress` and the step, so the analysis can treat it as censored."""

    patience_steps: Annotated[int, Field(ge=1)]
    """Stop when the curriculum length has not advanced for this many steps (the trainer's patience_steps;
    rl: episodes, patience_episodes)."""


class Tracking(Section):
    """Where the sweep is recorded. Relative paths are taken from the repository root."""

    uri: str | None = None
    """MLflow tracking URI. Unset: $MLFLOW_TRACKING_URI, else sqlite:///<repo>/runs/mlflow.db."""
    storage: str | None = None
    """Ray Tune storage (trial state and checkpoints): a path or a URI such as s3://bucket/dir, shared by every
    node on a multi-node cluster. Unset: $SEEDPOOL_STORAGE, else <repo>/runs."""
    log_checkpoints: bool = True
    """Attach each trial's final checkpoint to its MLflow run (large for wide models)."""


class Question(Section):
    """One question of an adaptive pool: either `halfwidth` (optionally for the cells `where` picks) or
    `compare`."""

    halfwidth: Annotated[float, Field(gt=0, lt=0.5)] | None = None
    """Grow each cell until its success rate's interval (an anytime-valid confidence sequence at `alpha`) is at
    most this far either side of the rate, e.g. 0.25."""
    where: dict[str, Any] = {}
    """With `halfwidth`: only the cells with these science values, e.g. {width: 24}; empty: every cell."""
    compare: dict[str, list[Any]] | None = None
    """One science field and two of its values, e.g. {width: [24, 64]}: grow both cells until they are decided
    'different' at level `alpha` (one comparison per setting of the other science fields)."""

    @model_validator(mode="after")
    def _one_question(self) -> Question:
        if (self.halfwidth is None) == (self.compare is None):
            raise ValueError(
                "a question is either `halfwidth: 0.25` (a cell's interval to reach) or `compare: {width: [24, 64]}`"
                " (two cells to tell apart); give exactly one"
            )
        if self.compare is not None:
            values = next(iter(self.compare.values()), None)
            if len(self.compare) != 1 or not isinstance(values, list) or len(values) != 2 or values[0] == values[1]:
                raise ValueError(
                    f"`compare` is {quote(self.compare)}; name one science field and two different values of it, "
                    "e.g. {width: [24, 64]}"
                )
            if self.where:
                raise ValueError("`where` picks the cells of a `halfwidth` question; `compare` names its own cells")
        return self


class Adaptive(Section):
    """Optional: grow the pool where its questions are still open (analysis/sequential.py has the procedure).
    `sweeps run` runs `min_seeds` seeds per cell, looks, adds `batch` seeds to each cell with an undecided
    question, and repeats until every question is decided or the cell has every seed of `axes.nuisance.seed`
    (the most a cell runs: one home for the maximum). A cell without a question runs `min_seeds` seeds.
    Looks may be taken after every batch without inflating errors: the intervals are anytime-valid."""

    alpha: Annotated[float, Field(gt=0, lt=0.5)] = 0.05
    """Error level of each decision: intervals hold with probability >= 1 - alpha at every look, and equal cells
    are called different with probability <= alpha. Per decision unless `familywise`."""
    familywise: bool = False
    """true: split `alpha` equally over the pool's decisions (Bonferroni: each at alpha / decisions, the cells'
    intervals too), so that the chance of any wrong interval or any false 'different' in the pool is <= alpha."""
    min_seeds: Annotated[int, Field(ge=1)]
    """Seeds per cell before the first look (the first min_seeds seeds of `axes.nuisance.seed`)."""
    batch: Annotated[int, Field(ge=1)]
    """Seeds added to an undecided cell after each look."""
    questions: Annotated[list[Question], Field(min_length=1)]
    """What the pool must answer (see Question)."""


class SweepConfig(Section):
    """A pool of training runs. Only `name`, `trainer`, `axes`, `budget` and `success` are required."""

    name: str
    """Sweep name: the MLflow experiment and the storage folder. Letters, digits, `_`, `-`, `.`."""
    description: str = ""
    """One line shown by `python -m sweeps list`."""
    trainer: str
    """Which trainer runs each trial: `neuralgpu` (neuralgpu.train) or `rl` (rl_tasks.train)."""
    base: dict[str, Any] = {}
    """Run-config fields shared by every trial, as deltas from the trainer's defaults."""
    axes: Axes
    """Science and nuisance axes (see Axes)."""
    resources: Resources = Resources()
    """Per-trial CPU and GPU request (see Resources)."""
    budget: Budget
    """Per-trial steps and/or minutes (see Budget)."""
    success: SuccessRule
    """The success rule (see SuccessRule)."""
    stopping: Stopping | None = None
    """Optional hopeless-seed rule (see Stopping)."""
    max_failures: Annotated[int, Field(ge=0)] = 2
    """Retries of a crashed trial, each from its last checkpoint (Ray Tune FailureConfig)."""
    tracking: Tracking = Tracking()
    """MLflow and storage locations (see Tracking)."""
    adaptive: Adaptive | None = None
    """Optional adaptive seed allocation (see Adaptive); unset: every seed of the seed axis runs."""

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", value):
            raise ValueError(f"name is {quote(value)}; use letters, digits, `_`, `-` and `.` (it names a folder)")
        return value

    @model_validator(mode="after")
    def _adaptive_fits_the_axes(self) -> SweepConfig:
        if self.adaptive is None:
            return self
        values = science_values(self.axes)
        seeds = len(self.axes.nuisance.get("seed", []))
        if seeds and self.adaptive.min_seeds > seeds:
            raise ValueError(
                f"`adaptive.min_seeds` is {self.adaptive.min_seeds} but `axes.nuisance.seed` has {seeds} seeds, the "
                "most a cell runs; lower min_seeds or widen the seed range"
            )
        for i, question in enumerate(self.adaptive.questions):
            where = f"adaptive.questions[{i}]"
            for key, picked in [*question.where.items(), *(question.compare or {}).items()]:
                if key not in values:
                    raise ValueError(
                        f"`{where}` names `{clip(str(key))}`, not a science field; use one of "
                        f"{', '.join(values) or '(none: add a science axis)'}"
                    )
                for value in picked if question.compare else [picked]:
                    if value not in values[key]:
                        raise ValueError(
                            f"`{where}` asks for {clip(str(key))}={quote(value)}, which is not a value of that axis "
                            f"({clip(str(values[key]))}); pick one of those"
                        )
        return self


def science_values(axes: Axes) -> dict[str, list[Any]]:
    """Each science field's values: {width: [24, 64]}; a joined axis gives each of its fields its own list."""
    values: dict[str, list[Any]] = {}
    for axis, entries in axes.science.items():
        for entry in entries:
            for field, value in axis_setting(axis, entry).items():
                values.setdefault(field, []).append(value)
    return values


def resolve_config_path(name: str) -> Path:
    """A path to a file, or a bare name resolved in sweeps/configs (with or without `.yaml`)."""
    given = Path(name)
    if given.is_file():
        return given
    if given.name == name:  # a bare name, not a path
        for candidate in (CONFIG_DIR / name, CONFIG_DIR / f"{name}.yaml"):
            if candidate.is_file():
                return candidate
    shipped = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")))
    raise SweepConfigError(
        f"{clip(name, 4 * 80)}: no such sweep config. Give a path to a YAML file or the name of a shipped config "
        f"({shipped}). Nothing was launched or recorded."
    )


class _UniqueKeyLoader(SafeLoader):
    """safe_load that refuses a key given twice in one mapping (YAML would silently keep the last)."""


def _construct_unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            mark = key_node.start_mark
            raise yaml.constructor.ConstructorError(
                None, None, f"key `{clip(str(key))}` appears twice in one mapping (line {mark.line + 1}); keep one"
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


def read_yaml(path: Path) -> dict[str, Any]:
    """The file's top-level mapping; errors name the file and say what to fix. The project's reader (not text,
    too large, alias bombs, bad syntax, not a mapping), with keys given twice refused too."""
    from seedcore.config import ConfigError, load_yaml

    try:
        values = load_yaml(path, loader=_UniqueKeyLoader)
    except ConfigError as exc:
        raise SweepConfigError(f"{exc} Nothing was launched or recorded.") from None
    if not values:
        raise SweepConfigError(
            f"{path}: the file holds no keys (it is empty or only comments); a sweep needs at least `name`, "
            "`trainer`, `axes`, `budget` and `success` (see sweeps/configs/tiny.yaml). Nothing was launched "
            "or recorded."
        )
    return values


def parse_sweep(values: dict[str, Any], path: Path | str) -> SweepConfig:
    """Validate the sweep-level schema (run fields are checked later, per trial, by the trainer's config)."""
    try:
        return SweepConfig.model_validate(values)
    except ValidationError as exc:
        problems = [describe_error(error) for error in exc.errors(include_url=False)]
        more = f" ({len(problems) - 1} more problem(s) after this one.)" if len(problems) > 1 else ""
        raise SweepConfigError(
            f"{path}: {problems[0]}.{more} See {SCHEMA_DOC} for every key. Nothing was launched or recorded."
        ) from None


def key_path(loc: tuple[Any, ...]) -> str:
    """('axes', 'nuisance', 'seed', 2) -> 'axes.nuisance.seed[2]'."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{clip(str(part))}" if out else clip(str(part)))
    return out


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The section model that holds the key at `loc`, for listing its known keys."""
    model: Any = SweepConfig
    for part in loc[:-1]:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        if field is None:
            return None
        annotation = field.annotation
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        model = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if model is None:
            return None
    return model


def describe_error(error: dict[str, Any]) -> str:
    """One pydantic error as a sentence with the key path and the fix."""
    loc = tuple(error["loc"])
    where = key_path(loc) or "the top level"
    kind, given = error["type"], error.get("input")
    if kind == "extra_forbidden":
        model = _model_at(loc)
        known = ", ".join(model.model_fields) if model else "(none)"
        return f"unknown key `{where}`; the keys allowed there are {known}. Fix the spelling or remove it"
    if loc and loc[-1] == "[key]":  # pydantic's place for a mapping key of the wrong type
        return f"`{key_path(loc[:-2])}` has the key {quote(loc[-2])}, not a name; write each key as text, e.g. `width`"
    if kind == "missing":
        return f"`{where}` is required but missing; add it"
    if kind == "value_error":
        message = error["msg"].removeprefix("Value error, ")
        return f"`{where}`: {message}" if loc else message  # a check across sections names its own keys
    if kind == "model_type":
        return f"`{where}` should be a mapping of keys, got {quote(given)}; write it as `key: value` lines"
    message = error["msg"][0].lower() + error["msg"][1:]
    return f"`{where}` is {quote(given)} ({type(given).__name__}): {clip(message, 160)}; fix the value"
