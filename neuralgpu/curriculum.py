"""Training-length curricula: named, configurable objects with a state that checkpoints.

A curriculum answers three questions for the trainer: which length to train the next batch on, whether that
batch counts towards the curriculum's error statistics, and (every `check_every` steps) whether the model
did well enough to pass a check. A passed check is an "advance": the length grows (if it can) and the trainer
anneals the parameter-sharing relaxation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class LengthCurriculum:
    """K15's length curriculum with length mixing (shared/reference/neural_gpu.md, "Curriculum").

    Each batch draws l ~ U[min, cur]; with p=0.6, l = max(l, U[min, cur]); with p=0.25, l = max(l, U[min, max]).
    Only batches with l <= cur count. A check passes when their mean sequence error is below `threshold`.
    """

    min_length: int
    start_length: int
    max_length: int
    threshold: float
    length: int = field(init=False)
    error_sum: float = field(init=False, default=0.0)
    error_count: int = field(init=False, default=0)
    last_error: float = field(init=False, default=1.0)
    """Mean counted sequence error at the last check (1.0 before the first)."""

    name = "length"

    def __post_init__(self) -> None:
        self.length = self.start_length

    def sample_length(self, rng: np.random.Generator) -> int:
        length = int(rng.integers(self.min_length, self.length + 1))
        if rng.random() < 0.6:
            length = max(length, int(rng.integers(self.min_length, self.length + 1)))
        if rng.random() < 0.25:
            length = max(length, int(rng.integers(self.min_length, self.max_length + 1)))
        return length

    def record(self, length: int, seq_error: float) -> None:
        if length <= self.length:
            self.error_sum += seq_error
            self.error_count += 1

    def check(self) -> bool:
        """Close the statistics window; True (an advance) when the window's mean error is below threshold."""
        if self.error_count == 0:
            return False
        self.last_error = self.error_sum / self.error_count
        self.error_sum, self.error_count = 0.0, 0
        passed = self.last_error < self.threshold
        if passed and self.length < self.max_length:
            self.length += 1
        return passed

    @property
    def at_max(self) -> bool:
        return self.length >= self.max_length

    def state_dict(self) -> dict[str, Any]:
        return {
            "length": self.length,
            "error_sum": self.error_sum,
            "error_count": self.error_count,
            "last_error": self.last_error,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.length = int(state["length"])
        self.error_sum = float(state["error_sum"])
        self.error_count = int(state["error_count"])
        self.last_error = float(state["last_error"])


@dataclass
class NoCurriculum(LengthCurriculum):
    """All lengths at once: every batch draws l ~ U[min, max] and counts; checks still anneal the relaxation."""

    name = "none"

    def __post_init__(self) -> None:
        self.length = self.max_length

    def sample_length(self, rng: np.random.Generator) -> int:
        return int(rng.integers(self.min_length, self.max_length + 1))


CURRICULA = {"length": LengthCurriculum, "none": NoCurriculum}


def make_curriculum(name: str, min_length: int, start_length: int, max_length: int, threshold: float):
    """The curriculum registered under `name` (see neuralgpu.config.CURRICULA)."""
    return CURRICULA[name](min_length=min_length, start_length=start_length, max_length=max_length, threshold=threshold)
