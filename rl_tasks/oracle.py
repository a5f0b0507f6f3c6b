"""Hand-coded perfect policies: they see only the observation (and remember what they choose to), like an agent.

They give the floor of the benchmark (a perfect policy still needs the env curriculum's episodes to reach the
reward threshold), drive the hand-worked tests, and show what each task asks of a controller's memory.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from rl_tasks.envs import DOWN_ARROW, END, LEFT_ARROW, UP_ARROW, AlgorithmicEnv, WalkEnv, make_env

Action = tuple[int, int, int]
LEFT, RIGHT, UP, DOWN = 0, 1, 2, 3


class ScriptedPolicy:
    """act(obs) -> (move, write, symbol); reset() at every episode start."""

    def __init__(self, env: AlgorithmicEnv):
        self.base = env.base
        self.env = env

    def reset(self) -> None:
        pass

    def act(self, obs: int) -> Action:
        raise NotImplementedError


class CopyPolicy(ScriptedPolicy):
    def act(self, obs: int) -> Action:
        return (RIGHT, 1, obs)


class DuplicatedInputPolicy(ScriptedPolicy):
    """Write every other symbol: needs one bit of memory (or the previous action)."""

    def reset(self) -> None:
        self.wrote = False

    def act(self, obs: int) -> Action:
        self.wrote = not self.wrote
        return (RIGHT, 1, obs) if self.wrote else (RIGHT, 0, 0)


class ReversePolicy(ScriptedPolicy):
    """Walk to the blank after the input, turn, write while walking back."""

    def reset(self) -> None:
        self.returning = False

    def act(self, obs: int) -> Action:
        if not self.returning:
            if obs != self.base:
                return (RIGHT, 0, 0)
            self.returning = True
            return (LEFT, 0, 0)
        return (LEFT, 1, obs)


class RepeatCopyPolicy(ScriptedPolicy):
    """Forward writing, turn at the blank, backward writing, turn at the blank, forward writing."""

    def reset(self) -> None:
        self.leg = 0

    def act(self, obs: int) -> Action:
        if obs == self.base:
            self.leg += 1
            return (LEFT if self.leg == 1 else RIGHT, 0, 0)
        return (LEFT if self.leg == 1 else RIGHT, 1, obs)


class ColumnAdditionPolicy(ScriptedPolicy):
    """Zigzag through the columns (down one column, up the next), summing the column, writing its digit on the
    column's last cell; at the blank after the last column write the carry. G19 layout: columns run rightwards
    from the head; LSAE layout: leftwards. `rows` steps per column."""

    def __init__(self, env: AlgorithmicEnv, step: int = RIGHT):
        super().__init__(env)
        self.step = step

    def reset(self) -> None:
        self.rows = self.env.rows
        self.y, self.down, self.total, self.carry = 0, True, 0, 0

    def act(self, obs: int) -> Action:
        if obs >= self.base:  # past the last column (blank, spacer or marker): the carry is the last digit
            return (self.step, 1, self.carry % self.base)
        self.total += obs
        last_cell = self.y == (self.rows - 1 if self.down else 0)
        if not last_cell:
            self.y += 1 if self.down else -1
            return (DOWN if self.down else UP, 0, 0)
        digit, self.carry = (self.total + self.carry) % self.base, (self.total + self.carry) // self.base
        self.total, self.down = 0, not self.down
        return (self.step, 1, digit)


class MultiplicationPolicy(ScriptedPolicy):
    """Read the digit on the top row, step down, then walk left along the number writing digit * d + carry."""

    def reset(self) -> None:
        self.digit: int | None = None
        self.carry = 0

    def act(self, obs: int) -> Action:
        if self.digit is None:
            self.digit = obs
            return (DOWN, 0, 0)
        if obs >= self.base:
            return (LEFT, 1, self.carry)
        total = obs * self.digit + self.carry
        self.carry = total // self.base
        return (LEFT, 1, total % self.base)


class WalkPolicy(ScriptedPolicy):
    def reset(self) -> None:
        self.direction: int | None = None

    def act(self, obs: int) -> Action:
        marker = obs - self.base - 1
        if self.direction is None:
            if marker in WalkEnv.DIRECTIONS:
                self.direction = {LEFT_ARROW: LEFT, UP_ARROW: UP, DOWN_ARROW: DOWN}[marker]
                return (self.direction, 0, 0)
            return (RIGHT, 0, 0)
        if marker == END or obs == self.base:
            return (self.direction, 0, 0)
        return (self.direction, 1, obs)


def scripted_policy(name: str, env: AlgorithmicEnv) -> ScriptedPolicy:
    """The hand-coded perfect policy of env `name` (bound to the raw env only for rows and base)."""
    policies = {
        "Copy": CopyPolicy,
        "DuplicatedInput": DuplicatedInputPolicy,
        "Reverse": ReversePolicy,
        "RepeatCopy": RepeatCopyPolicy,
        "ReversedAddition": ColumnAdditionPolicy,
        "ReversedAddition3": ColumnAdditionPolicy,
        "SingleDigitMultiplication": MultiplicationPolicy,
        "Walk": WalkPolicy,
    }
    if name in ("Addition", "Addition3"):
        return ColumnAdditionPolicy(env, step=LEFT)
    return policies[name](env)


def run_episode(env: Any, policy: ScriptedPolicy, **reset_kwargs: Any) -> tuple[float, int, bool]:
    """One episode; returns (total reward, steps, whole target written)."""
    obs, _ = env.reset(**reset_kwargs)
    policy.reset()
    total, steps, done = 0.0, 0, False
    while not done:
        obs, reward, terminated, truncated, _ = env.step(policy.act(int(obs)))
        total += reward
        steps += 1
        done = terminated or truncated
    raw = env.unwrapped
    return total, steps, total == len(raw.target) and raw.write_head_position == len(raw.target)


def episodes_to_solve(
    name: str, seed: int, max_episodes: int = 5000, reward_threshold: float | None = None, **env_kwargs: Any
) -> int | None:
    """Episodes before the first 100-episode window whose mean reward reaches the threshold (gym's 'episodes
    before solve', as the trainer's steps_to_success), for the scripted policy through the registered env (with
    its curriculum); None if never."""
    env = make_env(name, **env_kwargs)
    threshold = env.spec.reward_threshold if reward_threshold is None else reward_threshold
    policy = scripted_policy(name, env.unwrapped)
    window: deque[float] = deque(maxlen=100)
    for episode in range(1, max_episodes + 1):
        total, _, _ = run_episode(env, policy, seed=seed if episode == 1 else None)
        window.append(total)
        if len(window) == 100 and float(np.mean(window)) >= threshold:
            return episode - 100
    return None
