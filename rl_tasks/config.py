"""One typed, validated config per RL training run (a `seedcore.config.RunConfig`, like neuralgpu's).

`RLConfig` is the single source of truth for a run: the CLI builds its flags from these fields, sweeps expand
their axes into them, and the trainer reads nothing else. Every field has a one-line docstring (the string under
it); `describe_fields()` turns them into the CLI help. Defaults follow LSAE (shared/reference/algorithmic_rl.md)
where it gives a value; otherwise they are what solved Copy and DuplicatedInput most reliably in short CPU runs
(3 seeds each against a fixed discount of 0.9 and the joint action space; see sweeps/configs/rl_solve.yaml).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

from rl_tasks import ENV_NAMES
from rl_tasks.learners import LEARNERS
from seedcore.config import ConfigError, RunConfig, check_ranges, load_yaml, need_for, quote
from seedcore.config import describe_fields as describe_config_fields

AGENTS = tuple(LEARNERS)
CONTROLLERS = ("gru", "lstm", "ff")
OUTPUT_MODES = ("split", "joint")
Q_TARGETS = ("watkins", "one_step")
CURRICULA = ("env", "lsae")
OPTIMIZERS = ("adam", "sgd")
EXPLORATIONS = ("constant", "linear", "adaptive")
FLOAT_RANGES = {
    "lr": "(0, 1e30]",
    "clip_norm": "(0, 1e30]",
    "q_penalty": "[0, 100]",
    "entropy_coef": "[0, 100]",
    "reward_threshold": "[0, 1e6]",
    "floor_budget": "[0, 1e6]",
}
"""Float fields without a rule of their own below, and their ranges (seedcore.config.check_ranges);
probabilities, discounts and max_minutes are checked with their rules."""

__all__ = ["ConfigError", "RLConfig", "describe_fields", "load_yaml"]


@dataclass
class RLConfig(RunConfig):
    cli: ClassVar[str] = "python -m rl_tasks.train"
    step_budget: ClassVar[str] = "max_episodes"
    patience: ClassVar[str] = "patience_episodes"
    step_unit: ClassVar[str] = "episode"

    # --- what to learn -------------------------------------------------------------------------------------
    env: str = "Copy"
    """Environment name (rl_tasks/<env>-v0): Copy, DuplicatedInput, RepeatCopy, Reverse, ReversedAddition, ..."""
    corrected_time_limit: bool = False
    """ReversedAddition/3 only: rows * width + 4 steps instead of G19's 2 * width + 4 (a documented deviation)."""
    easy_start: bool = False
    """Addition envs: half the episodes carry-free while the curriculum length is <= 12 (the talk's 3-row fix)."""
    seed: int = 0
    """The run's seed: init_seed and data_seed when they are unset; the nuisance axis of every pool. 0..2**64-1."""
    init_seed: int | None = None
    """Seeds the initial weights only; unset: `seed`. With data_seed, splits the seed into its two sources."""
    data_seed: int | None = None
    """Seeds every draw after the initial weights (env inputs, exploration, curriculum, eval inputs); unset: `seed`."""

    # --- agent -----------------------------------------------------------------------------------------------
    agent: str = "qlearning"
    """Learner: qlearning (LSAE) or reinforce (RLNTM-style, reward-to-go and a learned baseline)."""
    controller: str = "gru"
    """Controller core: gru, lstm, or ff (feed-forward, memoryless apart from the previous action)."""
    hidden: int = 64
    """Units of the controller's one layer (LSAE: 200; 64 learned the tape tasks faster here)."""
    output_mode: str = "split"
    """split: symbol learned supervised, RL for move and write (LSAE); joint: the symbol is part of the action."""

    # --- Q-learning ------------------------------------------------------------------------------------------
    q_target: str = "watkins"
    """watkins: Watkins Q(lambda), traces cut at exploratory actions; one_step: one-step Q-learning targets."""
    discount: str = "dynamic"
    """dynamic: Q divided by the targets left (LSAE); or a fixed discount in (0, 1], e.g. 0.9."""
    exploration: str = "adaptive"
    """constant: epsilon (LSAE); linear: decay to epsilon_final; adaptive: epsilon x the greedy failure rate."""
    epsilon: float = 0.05
    """Behaviour policy: probability of a uniform random choice instead of the greedy one (LSAE: 0.05)."""
    epsilon_final: float = 0.0
    """Least exploration of the linear and adaptive schedules."""
    epsilon_decay_episodes: int = 2000
    """linear: episodes over which epsilon falls to epsilon_final."""
    q_penalty: float = 0.0
    """Weight of the penalty pulling sum_a Q^(s, a) to 1, once greedy accuracy >= 0.95 (LSAE: 0.01; 0 = off)."""

    # --- REINFORCE -------------------------------------------------------------------------------------------
    reinforce_gamma: float = 1.0
    """Discount of the reward-to-go."""
    baseline: bool = True
    """Learned baseline (a value head regressed on the reward-to-go)."""
    normalize_advantage: bool = True
    """Normalise the advantages of each batch to zero mean and unit variance."""
    entropy_coef: float = 0.01
    """Weight of the policy-entropy bonus."""

    # --- optimiser -------------------------------------------------------------------------------------------
    optimizer: str = "adam"
    """adam or sgd (LSAE: SGD, lr 0.1)."""
    lr: float = 0.003
    """Learning rate, in (0, 1e30] (see seedcore.config.OVERFLOW_SAFE)."""
    batch_episodes: int = 4
    """Episodes per gradient step (LSAE: 20 parallel samples)."""
    clip_norm: float = 5.0
    """Global gradient-norm clip (LSAE: 5)."""

    # --- curriculum ------------------------------------------------------------------------------------------
    curriculum: str = "env"
    """env: the env's own G19 length curriculum; lsae: LSAE's complexity schedule chooses each input length."""
    lsae_start: int = 6
    """LSAE: first complexity."""
    lsae_step: int = 4
    """LSAE: complexity increase at each advance."""
    lsae_spread: int = 4
    """LSAE: each episode's length is complexity - U{0..spread} (at least 2)."""
    lsae_accuracy: float = 0.995
    """LSAE: advance when the greedy sequence accuracy over the window reaches this."""
    lsae_window: int = 100
    """LSAE: exploration-free episodes in the accuracy window."""
    lsae_max_length: int = 34
    """LSAE: the complexity stops growing here (G19's env curriculum stops at 30..32)."""

    # --- success and evaluation ------------------------------------------------------------------------------
    reward_threshold: float = 0.0
    """Solved when the 100-episode mean reward reaches this (0 = the env's registered gym threshold)."""
    stop_on_success: bool = True
    """End the run once solved."""
    eval_lengths: tuple[int, ...] = (100, 500)
    """Input lengths of the greedy generalisation test (eval/seq_accuracy@L), run at the end."""
    eval_examples: int = 20
    """Episodes per test length."""
    eval_every: int = 0
    """Also run the test every this many episodes (0 = only at the end)."""

    # --- budget ----------------------------------------------------------------------------------------------
    max_episodes: int = 20000
    """Episode budget (0 = none; then max_minutes must be set)."""
    max_minutes: float = 0.0
    """Wall-time budget in minutes (0 = none). A time budget makes the stopping episode machine-dependent."""
    floor_budget: float = 0.0
    """Also stop after this many times the perfect policy's episodes to solve (rl_tasks.oracle, same env and data
    seed) plus the 100-episode solved window, so 'solved' means solved within that multiple (0 = off)."""
    patience_episodes: int = 0
    """Stop as `no_progress` when the curriculum length has not grown for this many episodes (0 = never)."""

    # --- runtime ---------------------------------------------------------------------------------------------
    report_every: int = 100
    """Episodes between metric reports (progress line, sweep record)."""
    checkpoint_every: int = 1000
    """Episodes between full training-state checkpoints (when a checkpoint directory is given)."""
    device: str = "cpu"
    """cpu, auto (CUDA when present), cuda or cuda:N. The agent acts one step at a time: CPU is faster."""
    threads: int = 1
    """torch CPU threads. Bit-identical metrics need the same value; sweeps give one thread per CPU."""

    # Derived values live next to the parse: computed, never stored in files.
    @property
    def gamma(self) -> float | None:
        """The fixed Q-learning discount, or None for the dynamic discount."""
        return None if self.discount == "dynamic" else float(self.discount)

    def validate(self, source: str = "config") -> None:
        need = need_for(source)

        def one_of(key: str, choices: tuple[str, ...]) -> None:
            value = getattr(self, key)
            need(value in choices, key, f"is {quote(value)}", f"use one of {', '.join(choices)}")

        one_of("env", ENV_NAMES)
        for key, choices in (
            ("agent", AGENTS),
            ("controller", CONTROLLERS),
            ("output_mode", OUTPUT_MODES),
            ("q_target", Q_TARGETS),
            ("curriculum", CURRICULA),
            ("optimizer", OPTIMIZERS),
            ("exploration", EXPLORATIONS),
        ):
            one_of(key, choices)
        need(
            self.discount == "dynamic" or _discount_value(self.discount) is not None,
            "discount",
            f"is {quote(self.discount)}",
            "use dynamic or a number in (0, 1]",
        )
        need(1 <= self.hidden <= 8192, "hidden", f"is {self.hidden}", "use between 1 and 8192 units (LSAE: 200)")
        for key in ("epsilon", "epsilon_final", "lsae_accuracy"):
            value = getattr(self, key)
            need(0.0 <= value <= 1.0, key, f"is {value}", "use a probability in [0, 1]")
        need(0.0 < self.reinforce_gamma <= 1.0, "reinforce_gamma", f"is {self.reinforce_gamma}", "use (0, 1]")
        check_ranges(need, self, FLOAT_RANGES)
        for key in (
            "epsilon_decay_episodes",
            "eval_every",
            "max_episodes",
            "max_minutes",
            "patience_episodes",
        ):
            value = getattr(self, key)
            need(math.isfinite(value) and value >= 0, key, f"is {value}", "use 0 or a positive number")
        for key in ("batch_episodes", "lsae_step", "lsae_window", "eval_examples"):
            need(getattr(self, key) >= 1, key, f"is {getattr(self, key)}", "use a positive integer")
        need(self.lsae_spread >= 0, "lsae_spread", f"is {self.lsae_spread}", "use 0 or a positive integer")
        need(
            2 <= self.lsae_start <= self.lsae_max_length,
            "lsae_start",
            f"breaks 2 <= lsae_start <= lsae_max_length ({self.lsae_start}, {self.lsae_max_length})",
            "order them",
        )
        need(
            len(self.eval_lengths) > 0 and all(n >= 1 for n in self.eval_lengths),
            "eval_lengths",
            f"is {quote(list(self.eval_lengths))}",
            "give one or more positive lengths",
        )
        self.validate_run(need)

    @classmethod
    def normalise(cls, values: dict[str, Any]) -> dict[str, Any]:
        if isinstance(values.get("discount"), int | float) and not isinstance(values["discount"], bool):
            values["discount"] = repr(float(values["discount"]))  # YAML `discount: 0.9` is a number
        return values


def _discount_value(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if 0.0 < value <= 1.0 else None


def describe_fields() -> dict[str, str]:
    """Field name -> its one-line docstring (the string under each field above)."""
    return describe_config_fields(RLConfig)
