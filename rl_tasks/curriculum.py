"""Length curricula on the agent's side. The G19 envs carry their own (`curriculum: env`); this module holds
LSAE's complexity schedule (`curriculum: lsae`), which chooses each episode's input length itself.

LSAE (official code, utils/Curriculum.lua): complexity starts at 6; each sample uses complexity - U{0..4}
(at least 2); when the accuracy is high enough, complexity += 4. LSAE then tested on much longer inputs and
stopped once that passed; here the trainer's own long-input evaluation and the gym 'solved' rule play that part,
so the schedule simply keeps growing up to `max_length`.

Accuracy is that of the greedy policy, measured for free on the training episodes in which the behaviour policy
took no exploratory action (exactly the episodes the greedy policy would have played).
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np


class LsaeCurriculum:
    def __init__(self, start: int, step: int, spread: int, accuracy: float, window: int, max_length: int):
        self.complexity = start
        self.step = step
        self.spread = spread
        self.accuracy = accuracy
        self.window = window
        self.max_length = max_length
        self.recent: deque[bool] = deque(maxlen=window)

    @property
    def length(self) -> int:
        return self.complexity

    @property
    def at_max(self) -> bool:
        return self.complexity >= self.max_length

    def sample_length(self, rng: np.random.Generator) -> int:
        return max(self.complexity - int(rng.integers(self.spread + 1)), 2)

    def record(self, solved: bool, greedy: bool) -> bool:
        """Record one training episode; returns True when the complexity advanced."""
        if not greedy:
            return False
        self.recent.append(solved)
        if len(self.recent) == self.window and np.mean(self.recent) >= self.accuracy and not self.at_max:
            self.complexity = min(self.complexity + self.step, self.max_length)
            self.recent.clear()
            return True
        return False

    def state_dict(self) -> dict[str, Any]:
        return {"complexity": self.complexity, "recent": list(self.recent)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.complexity = int(state["complexity"])
        self.recent = deque((bool(s) for s in state["recent"]), maxlen=self.window)
