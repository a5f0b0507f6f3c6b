"""Load a sweep file and expand it into trials: one validated run config and one stable key per trial."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seedcore.config import clip, quote
from sweeps.overrides import Override, RunFields, apply_overrides, label, parse_overrides
from sweeps.schema import (
    MAX_TRIALS,
    SweepConfig,
    SweepConfigError,
    axis_setting,
    parse_sweep,
    read_yaml,
    resolve_config_path,
)
from sweeps.trainers import TrainerSpec, get_trainer

NOTHING_DONE = "Nothing was launched or recorded."


@dataclass(frozen=True)
class Trial:
    key: str
    """Stable identity: hash of the trainer name and the fully resolved run config (seed included)."""
    index: int
    """Position in the expansion (seed-major, so a partly run pool covers every cell)."""
    cell: dict[str, Any]
    """Science-axis values: the summary-table cell this trial belongs to."""
    axis_values: dict[str, Any]
    """Every axis value of this trial (science and nuisance)."""
    run_config: dict[str, Any] = field(repr=False)
    """The trainer's full config as a plain dict (TrainConfig.to_dict() or RLConfig.to_dict())."""

    @property
    def seed(self) -> int:
        return self.run_config["seed"]

    @property
    def cell_label(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.cell.items()) or "all"

    @property
    def seed_label(self) -> str:
        """`seed3`, or `init1-data2` for a trial that splits its seed (RunConfig.run_seeds)."""
        config = self.run_config
        if config.get("init_seed") is None and config.get("data_seed") is None:
            return f"seed{self.seed}"
        init_seed, data_seed = (self.seed if config[k] is None else config[k] for k in ("init_seed", "data_seed"))
        return f"init{init_seed}-data{data_seed}"

    @property
    def name(self) -> str:
        """Run name: cell, seed and key, so the seed travels in the name (cleanrl)."""
        cell = "-".join(f"{k}{v}" for k, v in self.cell.items())
        return f"{cell + '-' if cell else ''}{self.seed_label}-{self.key[:8]}"


@dataclass(frozen=True)
class Sweep:
    path: Path
    text: str
    """The YAML exactly as given (the parent run's artifact)."""
    config: SweepConfig
    trainer: TrainerSpec
    trials: list[Trial]
    overrides: tuple[str, ...] = ()
    """Command-line overrides applied to the file (sweeps.overrides), as given; recorded on the parent run."""
    values: dict[str, Any] = field(default_factory=dict, repr=False)
    """The sweep's values after the overrides (the effective YAML), before validation."""

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def science_axes(self) -> list[str]:
        """The cell columns: science fields, a joined axis (`model+width`) split into its fields."""
        return self.config.axes.science_fields()


def trial_key(trainer: str, run_config: dict[str, Any], later_fields: dict[str, Any] | None = None) -> str:
    """16 hex digits of SHA-256 over canonical JSON: equal configs give equal keys on any machine.

    later_fields: run fields added after pools were recorded, with the value that keeps the earlier behaviour
    (TrainerSpec.later_fields); left out of the hash at that value, so an upgrade keeps every recorded key."""
    later = later_fields or {}
    hashed = {k: v for k, v in run_config.items() if k not in later or v != later[k]}
    canonical = json.dumps({"trainer": trainer, "run": hashed}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def load_sweep(name: str, overrides: list[str] | tuple[str, ...] = ()) -> Sweep:
    """Resolve, read, override (`budget.steps=2000`, sweeps.overrides), validate and expand a sweep; any problem
    raises SweepConfigError naming the file (and the overrides) and the key."""
    path = resolve_config_path(name)
    values = read_yaml(path)
    parsed = parse_overrides(list(overrides))
    source = label(str(path), parsed)
    if parsed:
        values = apply_overrides(values, parsed, run_fields_for(values, parsed))
    config = parse_sweep(values, source)
    trainer = get_trainer(config.trainer, source=source)
    return Sweep(
        path=path,
        text=path.read_text(),
        config=config,
        trainer=trainer,
        trials=expand(config, trainer, source),
        overrides=tuple(o.text for o in parsed),
        values=values,
    )


def run_fields_for(values: dict[str, Any], overrides: list[Override]) -> RunFields | None:
    """The run-config fields of the trainer the overridden sweep names; None when it names no known trainer (the
    schema says so next)."""
    name = next((o.value for o in reversed(overrides) if o.path == ("trainer",)), values.get("trainer"))
    try:
        return RunFields.of(get_trainer(name).config_class_object()) if isinstance(name, str) else None
    except SweepConfigError:
        return None


def expand(config: SweepConfig, trainer: TrainerSpec, source: str) -> list[Trial]:
    trainer.check_sweep(config, source)  # first: a rule the trainer cannot honour is the root problem
    check_axes(config, trainer, source)
    check_pool_size(config, source)
    config_class = trainer.config_class_object()
    owned = trainer.owned_fields(config)
    science, nuisance = config.axes.science, config.axes.nuisance

    def build(values: dict[str, Any], where: str) -> dict[str, Any]:
        try:
            return config_class.from_dict({**config.base, **values, **owned}, source=where).to_dict()
        except ValueError as exc:  # the trainer's ConfigError: names the key and the fix
            raise SweepConfigError(f"{exc} {NOTHING_DONE}") from None

    # The owned fields alone first, so a bad success rule is reported at `success.*` and not at `base`.
    try:
        config_class.from_dict(owned, source=source)
    except ValueError as exc:
        message = str(exc).removeprefix(f"{source}:")
        owner = next((o for f, o in trainer.owners.items() if f"`{f}`" in message), "budget/success/resources")
        raise SweepConfigError(f"{source}: in `{owner}`:{message} {NOTHING_DONE}") from None
    # Then each value alone, so an error points at the one bad entry rather than at a whole trial.
    build({}, f"{source}: in `base`")
    for group, axes in (("science", science), ("nuisance", nuisance)):
        for axis, axis_values in axes.items():
            for i, value in enumerate(axis_values):
                build(axis_setting(axis, value), f"{source}: in `axes.{group}.{clip(axis)}[{i}]`")

    trials = []

    def settings(axes: dict[str, list[Any]]) -> list[dict[str, Any]]:
        """Every combination of the axes' values as {field: value} (a joined axis sets all its fields)."""
        combos = itertools.product(*([axis_setting(axis, v) for v in values] for axis, values in axes.items()))
        return [{k: v for part in combo for k, v in part.items()} for combo in combos]

    science_combos, nuisance_combos = settings(science), settings(nuisance)
    for nuisance_values in nuisance_combos:  # seed-major: the first trials cover every cell
        for cell in science_combos:
            axis_values = {**cell, **nuisance_values}
            run_config = build(axis_values, f"{source}: in the trial {quote(axis_values)}")
            trials.append(
                Trial(
                    key=trial_key(trainer.name, run_config, trainer.later_fields),
                    index=len(trials),
                    # List-valued axes (a task curriculum) label their cell as "bmul>qmul>mul": hashable, readable.
                    cell={k: ">".join(map(str, v)) if isinstance(v, list | tuple) else v for k, v in cell.items()},
                    axis_values=axis_values,
                    run_config=run_config,
                )
            )
    check_packs(config, trainer, trials, source)
    return trials


def check_packs(config: SweepConfig, trainer: TrainerSpec, trials: list[Trial], source: str) -> None:
    """With `resources.pack` > 1: the trainer packs seeds, and each pack's trials can train as one."""
    size = config.resources.pack
    if size == 1:
        return
    if trainer.check_pack is None:
        raise SweepConfigError(
            f"{source}: `resources.pack` is {size}, but trainer `{trainer.name}` trains one seed per process; "
            f"remove `resources.pack`. {NOTHING_DONE}"
        )
    for pack in form_packs(trials, size):
        try:
            trainer.check_pack([t.run_config for t in pack], f"{source}: in `resources.pack`")
        except ValueError as exc:
            raise SweepConfigError(f"{exc} {NOTHING_DONE}") from None


def form_packs(trials: list[Trial], size: int) -> list[list[Trial]]:
    """The trials as packs of at most `size` seeds of one cell each (resources.pack), in expansion order: a cell's
    trials fill its packs in turn, so a grown pool packs only its new trials. With size 1, one trial each."""
    by_cell: dict[str, list[Trial]] = {}
    for trial in trials:
        by_cell.setdefault(trial.cell_label, []).append(trial)
    packs = [cell[i : i + size] for cell in by_cell.values() for i in range(0, len(cell), size)]
    return sorted(packs, key=lambda pack: pack[0].index)


def check_pool_size(config: SweepConfig, source: str) -> None:
    """Refuse a pool of more than MAX_TRIALS trials before expanding it (axes multiply: 5 axes of 100 values would
    be 10^10 trials, validated one by one)."""
    axes = {**config.axes.science, **config.axes.nuisance}
    size = math.prod(len(values) for values in axes.values())
    if size > MAX_TRIALS:
        product = " x ".join(f"{len(values)} {clip(axis, 40)}" for axis, values in axes.items())
        raise SweepConfigError(
            f"{source}: `axes` make {size:,} trials ({clip(product, 200)}), more than the {MAX_TRIALS:,} one pool may "
            f"have; split the study into several sweeps or use fewer values. {NOTHING_DONE}"
        )


def check_axes(config: SweepConfig, trainer: TrainerSpec, source: str) -> None:
    """Rules that span sections: where seeds go, owned fields, and keys set in two places."""
    science, nuisance = config.axes.science_fields(), config.axes.nuisance

    def fail(message: str) -> None:
        raise SweepConfigError(f"{source}: {message}. {NOTHING_DONE}")

    # Both split seeds vary instead of `seed`: a crossed init x data design, in which `seed` decides nothing.
    if "seed" not in nuisance and not {"init_seed", "data_seed"} <= set(nuisance):
        where = "`axes.science.seed`" if "seed" in science else "nothing"
        fail(
            f"`axes.nuisance.seed` is required (found {where}): seeds are the nuisance axis of every pool; "
            "add e.g. `nuisance: {seed: {start: 0, stop: 8}}` under `axes` (or both `init_seed` and `data_seed`, "
            "to cross the seed's two sources)"
        )
    twice = sorted({field for field in science if science.count(field) > 1})
    if twice:
        fail(
            f"`{clip(twice[0])}` is set by two science axes; give it in one axis (a joined axis like `model+width` "
            "counts)"
        )
    for place, keys in (("base", config.base), ("axes.science", science), ("axes.nuisance", nuisance)):
        for key in keys:
            owner = trainer.owners.get(key)
            if owner and not (key == "seed" and place == "axes.nuisance"):
                fail(f"`{place}.{clip(key)}` is set by `{owner}` in this file; move the value there")
    for key in sorted(set(science) & set(nuisance)):
        fail(f"`{clip(key)}` is both a science and a nuisance axis; keep it in one of `axes.science`/`axes.nuisance`")
    for key in sorted(set(config.base) & (set(science) | set(nuisance))):
        fail(f"`base.{clip(key)}` is also an axis; remove it from `base` (the axis gives every value)")
