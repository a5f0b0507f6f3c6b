"""The trainers a sweep can drive: name -> config class, train function, and which run fields the sweep's
sections own. Imported lazily, so validating a sweep never imports torch-heavy training code."""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sweeps.schema import SweepConfig, SweepConfigError


@dataclass(frozen=True)
class TrainerSpec:
    name: str
    config_class: str
    """`module:Class` with `from_dict(values, source)` raising a ValueError that names key and source."""
    train_function: str
    """`module:function` with the signature `train(cfg, report, checkpoint_dir, resume_from) -> result`."""
    owned_fields: Callable[[SweepConfig], dict[str, Any]]
    """The run fields set by the sweep's budget/success/stopping/resources sections (never by base or axes)."""
    owners: dict[str, str]
    """Run field -> the sweep key that owns it, for the error when `base` or an axis sets it."""
    tag_fields: tuple[str, ...]
    """Run fields copied to MLflow tags, for filtering in the UI."""
    unavailable: str = ""
    """Why the trainer cannot be used yet (empty when it can)."""

    def config_class_object(self) -> Any:
        return _load(self.config_class)

    def train_callable(self) -> Callable[..., Any]:
        return _load(self.train_function)


def _load(target: str) -> Any:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def neuralgpu_owned_fields(sweep: SweepConfig) -> dict[str, Any]:
    budget, success, resources = sweep.budget, sweep.success, sweep.resources
    fields: dict[str, Any] = {
        "max_steps": budget.steps or 0,
        "max_minutes": float(budget.minutes or 0.0),
        "success_metric": success.metric,
        "success_threshold": success.threshold,
        "success_length": success.length,
        "success_hold": success.hold,
        "patience_steps": sweep.stopping.patience_steps if sweep.stopping else 0,
        # One torch thread per CPU a trial holds: same threads as a CLI run gives bit-identical numbers.
        "threads": max(1, math.floor(resources.cpu)),
        "device": "cuda" if resources.gpu > 0 else "cpu",
    }
    if success.gate is not None:
        fields["success_gate"] = success.gate
    return fields


NEURALGPU_OWNERS = {
    "max_steps": "budget.steps",
    "max_minutes": "budget.minutes",
    "success_metric": "success.metric",
    "success_threshold": "success.threshold",
    "success_length": "success.length",
    "success_hold": "success.hold",
    "success_gate": "success.gate",
    "patience_steps": "stopping.patience_steps",
    "threads": "resources.cpu",
    "device": "resources.gpu",
    "seed": "axes.nuisance.seed",
}

TRAINERS: dict[str, TrainerSpec] = {
    "neuralgpu": TrainerSpec(
        name="neuralgpu",
        config_class="neuralgpu.config:TrainConfig",
        train_function="neuralgpu.train:train",
        owned_fields=neuralgpu_owned_fields,
        owners=NEURALGPU_OWNERS,
        tag_fields=("seed", "width", "curriculum", "task"),
    ),
    "rl": TrainerSpec(
        name="rl",
        config_class="",
        train_function="",
        owned_fields=lambda sweep: {},
        owners={"seed": "axes.nuisance.seed"},
        tag_fields=("seed",),
        unavailable="the RL trainer is not available yet (it lands with the RL issue, with rl_qlearning.yaml)",
    ),
}


def get_trainer(name: str, source: str = "config") -> TrainerSpec:
    spec = TRAINERS.get(name)
    if spec is None:
        raise SweepConfigError(
            f"{source}: `trainer` is {name!r}, not a known trainer; use one of {', '.join(TRAINERS)}. "
            "Nothing was launched or recorded."
        )
    if spec.unavailable:
        raise SweepConfigError(
            f"{source}: `trainer` is {name!r}, but {spec.unavailable}; use trainer: neuralgpu for now. "
            "Nothing was launched or recorded."
        )
    return spec
