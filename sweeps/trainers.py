"""The trainers a sweep can drive: name -> config class, train function, and which run fields the sweep's
sections own. Imported lazily, so validating a sweep never imports torch-heavy training code."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from seedcore.config import quote
from seedcore.record import CONFIG_TAGS, NEURALGPU, RL, STEP_UNITS
from seedcore.registry import load_object
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
    """Run fields copied to MLflow tags, for filtering in the UI (seedcore.record.CONFIG_TAGS)."""
    describe_success: Callable[[SweepConfig], str]
    """The success rule in words, for the dry run."""
    check_sweep: Callable[[SweepConfig, str], None] = lambda sweep, source: None
    """Rules on the sweep's sections that the run config cannot express (raises SweepConfigError)."""
    later_fields: dict[str, Any] = field(default_factory=dict)
    """Run fields added after pools were recorded -> the value that keeps the earlier behaviour. Trial keys
    leave a field out at that value, so pools recorded before it existed keep their keys (and resume)."""
    step_unit: str = STEP_UNITS[NEURALGPU]
    """What the trainer's `step`, `budget.steps` and `steps_to_success` count (seedcore.record.STEP_UNITS)."""
    unavailable: str = ""
    """Why the trainer cannot be used yet (empty when it can)."""
    check_pack: Callable[[list[dict[str, Any]], str], None] | None = None
    """Raises ValueError naming the field when these run configs cannot train as one pack (resources.pack);
    None: the trainer has no packed mode."""
    pack_function: str = ""
    """`module:function` with the signature `train_pack(cfgs, reports, checkpoint_dirs, resume_from, finished,
    stepped)` (neuralgpu.packed.train_pack), when the trainer has a packed mode."""

    def pack_callable(self) -> Callable[..., Any]:
        return load_object(self.pack_function)

    def config_class_object(self) -> Any:
        return load_object(self.config_class)

    def train_callable(self) -> Callable[..., Any]:
        return load_object(self.train_function)


def neuralgpu_owned_fields(sweep: SweepConfig) -> dict[str, Any]:
    budget, success, resources = sweep.budget, sweep.success, sweep.resources
    fields: dict[str, Any] = {
        "max_steps": budget.steps or 0,
        "max_minutes": float(budget.minutes or 0.0),
        "success_metric": success.metric,
        "success_threshold": success.threshold,
        "success_length": success.length,
        "success_hold": success.hold,
        "success_confirm": success.confirm,
        "patience_steps": sweep.stopping.patience_steps if sweep.stopping else 0,
        # One torch thread per CPU a trial holds: same threads as a CLI run gives bit-identical numbers.
        "threads": max(1, math.floor(resources.cpu)),
        "device": "cuda" if resources.gpu > 0 else "cpu",
    }
    if success.gate is not None:
        fields["success_gate"] = success.gate
    return fields


def neuralgpu_check_pack(run_configs: list[dict[str, Any]], where: str) -> None:
    from neuralgpu.config import TrainConfig, check_pack

    check_pack([TrainConfig.from_dict(values, source=where) for values in run_configs], where)


def neuralgpu_success(sweep: SweepConfig) -> str:
    rule = sweep.success
    confirm = f", confirmed on {rule.confirm} fresh examples" if rule.confirm else ""
    return f"{rule.metric} < {rule.threshold:g} at length {rule.length} (hold {rule.hold}{confirm})"


NEURALGPU_OWNERS = {
    "max_steps": "budget.steps",
    "max_minutes": "budget.minutes",
    "success_metric": "success.metric",
    "success_threshold": "success.threshold",
    "success_length": "success.length",
    "success_hold": "success.hold",
    "success_confirm": "success.confirm",
    "success_gate": "success.gate",
    "patience_steps": "stopping.patience_steps",
    "threads": "resources.cpu",
    "device": "resources.gpu",
    "seed": "axes.nuisance.seed",
}

# --- rl: rl_tasks.train ----------------------------------------------------------------------------------
RL_SUCCESS_METRIC = "reward_mean100"
"""The only success rule of the RL trainer: gym's 'solved', the mean total reward of the last 100 episodes
(`episode/reward_mean100`) reaching the reward threshold."""


def rl_owned_fields(sweep: SweepConfig) -> dict[str, Any]:
    """RL reads the sections in episodes: budget.steps = max_episodes, stopping.patience_steps =
    patience_episodes. success.threshold is gym's reward threshold (0 = each env's registered one), and
    success.length the input length of the held-out greedy test at the end of each trial (eval_lengths), the
    pool's generalisation measure; it does not decide success (see check_rl_sweep)."""
    budget, success, resources = sweep.budget, sweep.success, sweep.resources
    return {
        "max_episodes": budget.steps or 0,
        "max_minutes": float(budget.minutes or 0.0),
        "reward_threshold": float(success.threshold),
        "eval_lengths": [success.length],
        "patience_episodes": sweep.stopping.patience_steps if sweep.stopping else 0,
        "threads": max(1, math.floor(resources.cpu)),
        "device": "cuda" if resources.gpu > 0 else "cpu",
    }


RL_OWNERS = {
    "max_episodes": "budget.steps",
    "max_minutes": "budget.minutes",
    "reward_threshold": "success.threshold",
    "eval_lengths": "success.length",
    "patience_episodes": "stopping.patience_steps",
    "threads": "resources.cpu",
    "device": "resources.gpu",
    "seed": "axes.nuisance.seed",
}


def check_rl_sweep(sweep: SweepConfig, source: str) -> None:
    """Settings the RL trainer cannot honour are errors, not silently ignored: a success rule other than gym's,
    and test lengths set anywhere but `success.length`."""
    success = sweep.success
    science = sweep.axes.science_fields()
    places = (("base", sweep.base), ("axes.science", science), ("axes.nuisance", sweep.axes.nuisance))
    rule = (
        "trainer `rl` judges success by gym's rule only: solved when the mean reward of the last 100 episodes "
        "reaches `success.threshold` (0 = each env's registered threshold), while `success.length` sets the "
        "input length of the held-out greedy test run at the end of each trial"
    )
    if success.metric != RL_SUCCESS_METRIC:
        problem = f"`success.metric` is {quote(success.metric)}, but {rule}"
        fix = f"set `success.metric: {RL_SUCCESS_METRIC}`"
    elif success.hold != 1:
        problem = f"`success.hold` is {success.hold}, but {rule}; its 100-episode window is already the hold"
        fix = "remove `success.hold`"
    elif success.confirm:
        problem = f"`success.confirm` is {success.confirm}, but {rule}; there is no test to confirm"
        fix = "remove `success.confirm`"
    elif success.gate is not None:
        problem = f"`success.gate` is {success.gate:g}, but {rule}; there is no gate before it"
        fix = "remove `success.gate`"
    elif place := next((p for p, keys in places if "eval_lengths" in keys), None):
        problem = (
            f"`{place}.eval_lengths` is set, but trainer `rl` runs its held-out greedy test at one length, "
            "`success.length`, which owns eval_lengths"
        )
        fix = f"remove `eval_lengths` from `{place}` and give the test length as `success.length`"
    else:
        return
    raise SweepConfigError(f"{source}: {problem}. To fix it, {fix}. Nothing was launched or recorded.")


def rl_success(sweep: SweepConfig) -> str:
    rule = sweep.success
    threshold = f"{rule.threshold:g}" if rule.threshold else "each env's registered threshold"
    return (
        f"gym's solved: 100-episode mean reward >= {threshold}; held-out greedy test at length {rule.length} at the end"
    )


SPLIT_SEEDS_UNSET = {"init_seed": None, "data_seed": None}
"""Both trainers' seed split (RunConfig.run_seeds), added after pools were recorded; unset, a trial is `seed`'s."""

TRAINERS: dict[str, TrainerSpec] = {
    NEURALGPU: TrainerSpec(
        name=NEURALGPU,
        config_class="neuralgpu.config:TrainConfig",
        train_function="neuralgpu.train:train",
        owned_fields=neuralgpu_owned_fields,
        owners=NEURALGPU_OWNERS,
        tag_fields=CONFIG_TAGS[NEURALGPU],
        describe_success=neuralgpu_success,
        # init and lr_decay_rule (issue 19) at K15's values: K15 pools keep their keys; F17 pools get new ones, as
        # F17's recipe changed (its own AdaMax, LR rule, initialisation and dropout per task).
        later_fields={"success_confirm": 0, "init": "torch", "lr_decay_rule": "k15", **SPLIT_SEEDS_UNSET},
        check_pack=neuralgpu_check_pack,
        pack_function="neuralgpu.packed:train_pack",
    ),
    RL: TrainerSpec(
        name=RL,
        config_class="rl_tasks.config:RLConfig",
        train_function="rl_tasks.train:train",
        owned_fields=rl_owned_fields,
        owners=RL_OWNERS,
        tag_fields=CONFIG_TAGS[RL],
        describe_success=rl_success,
        check_sweep=check_rl_sweep,
        step_unit=STEP_UNITS[RL],
        later_fields={**SPLIT_SEEDS_UNSET, "floor_budget": 0.0},
    ),
}


def get_trainer(name: str, source: str = "config") -> TrainerSpec:
    spec = TRAINERS.get(name)
    if spec is None:
        raise SweepConfigError(
            f"{source}: `trainer` is {quote(name)}, not a known trainer; use one of {', '.join(TRAINERS)}. "
            "Nothing was launched or recorded."
        )
    if spec.unavailable:
        raise SweepConfigError(
            f"{source}: `trainer` is {quote(name)}, but {spec.unavailable}; use another trainer for now. "
            "Nothing was launched or recorded."
        )
    return spec
