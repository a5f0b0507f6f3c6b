"""Training-length curricula: named, configurable objects with a state that checkpoints.

A length curriculum answers three questions for the trainer: which lengths to train the next step on, whether a
batch counts towards the curriculum's error statistics, and (every `advance_every` steps) whether the model did
well enough to pass a check. A passed check is an "advance": the length grows (if it can) and the trainer anneals
the parameter-sharing relaxation. `TaskCurriculum` sits above one length curriculum per task (P16's base
curriculum, e.g. bmul -> qmul -> mul).
"""

from __future__ import annotations

from collections.abc import Callable
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

    def sample_lengths(self, rng: np.random.Generator) -> list[int]:
        """The lengths of the next training step's batches (one batch per length)."""
        return [self.sample_length(rng)]

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


@dataclass
class BinsCurriculum(NoCurriculum):
    """F17: no length curriculum; every step trains one batch of each bin length together."""

    bins: tuple[int, ...] = (8, 12, 16, 20, 25, 28, 31, 36, 41)
    name = "bins"

    def __post_init__(self) -> None:
        self.length = self.max_length
        self.bins = tuple(b for b in self.bins if self.min_length <= b <= self.max_length)

    def sample_lengths(self, rng: np.random.Generator) -> list[int]:
        return list(self.bins)


CURRICULA = {"length": LengthCurriculum, "none": NoCurriculum, "bins": BinsCurriculum}


def make_curriculum(
    name: str, min_length: int, start_length: int, max_length: int, threshold: float, bins: tuple[int, ...] = ()
) -> LengthCurriculum:
    """The length curriculum registered under `name` (see neuralgpu.config)."""
    extra = {"bins": bins} if name == "bins" else {}
    return CURRICULA[name](
        min_length=min_length, start_length=start_length, max_length=max_length, threshold=threshold, **extra
    )


class TaskCurriculum:
    """P16's task (base) curriculum over an ordered task list, each task with its own length curriculum.

    A task is solved when a check passes at its maximum length. 80% of steps (`first_share`) train the first
    unsolved task, the rest a uniformly chosen unsolved task; once all are solved, only the last task trains. A
    solved task whose check fails again becomes unsolved and its length goes down by one. With a single task this
    is exactly that task's length curriculum.
    """

    def __init__(self, tasks: list[str], make_length: Callable[[], LengthCurriculum], first_share: float = 0.8):
        self.tasks = list(tasks)
        self.lengths = {task: make_length() for task in self.tasks}
        self.solved = dict.fromkeys(self.tasks, False)
        self.first_share = first_share

    def sample_task(self, rng: np.random.Generator) -> str:
        if len(self.tasks) == 1:
            return self.tasks[0]  # draws nothing: a single-task run keeps K15's random stream
        unsolved = [task for task in self.tasks if not self.solved[task]]
        if not unsolved:
            return self.tasks[-1]
        if rng.random() < self.first_share:
            return unsolved[0]
        return unsolved[int(rng.integers(len(unsolved)))]

    def check(self) -> bool:
        """Check every task trained since the last check; True when any check passed (an advance)."""
        advanced = False
        for task, curriculum in self.lengths.items():
            if curriculum.error_count == 0:
                continue
            was_at_max = curriculum.at_max
            passed = curriculum.check()
            advanced |= passed
            if len(self.tasks) == 1:
                continue
            if passed and was_at_max:
                self.solved[task] = True
            elif not passed and self.solved[task]:
                self.solved[task] = False
                curriculum.length = max(curriculum.min_length, curriculum.length - 1)
        return advanced

    def state_dict(self) -> dict[str, Any]:
        return {"lengths": {task: c.state_dict() for task, c in self.lengths.items()}, "solved": dict(self.solved)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for task, curriculum_state in state["lengths"].items():
            self.lengths[task].load_state_dict(curriculum_state)
        self.solved = {task: bool(value) for task, value in state["solved"].items()}
