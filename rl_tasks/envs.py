"""Algorithmic environments on a tape or grid, for Gymnasium: gym 0.19's six and four LSAE grid tasks.

Written from the facts in shared/reference/algorithmic_rl.md and from the facts of G19's source (G19 = openai/gym
0.19.0 `gym/envs/algorithmic/`; `ae` = its algorithmic_env.py), LSAE = Zaremba et al. 2016 and its official code;
none of gym's code is copied.

G19 rules (each pinned by a test in tests/test_rl_envs.py):
- Observation: Discrete(base + 1), the symbol under the read head; index `base` is the blank, read anywhere off the
  tape or grid, in every direction (ae `_get_obs`). The LSAE grids add marker symbols after the blank.
- Action: Tuple(Discrete(len(MOVEMENTS)), Discrete(2), Discrete(base)) = (move, write, symbol); MOVEMENTS is
  [left, right] on a tape, [left, right, up, down] on a grid (y grows downwards). The move always happens; the
  symbol is ignored when write == 0 (ae `__init__`, `_move`).
- Step (ae `step`): time += 1 first. A write compares the symbol with target[write head]: +1 if equal; else -0.5
  and the episode ends (a write past the target's end counts as wrong). The write head advances either way and the
  episode ends once it reaches len(target). Then the read head moves. Then, if time > time_limit, the reward is
  -1 (replacing the step's) and the episode ends.
- time_limit = input_width + len(target) + 4, input_width = len(input_data) (ae `time_limit`); ReversedAddition(3):
  2 * input_width + 4 whatever the rows (reversed_addition.py).
- Reset (ae `reset`): record the curriculum, then draw length = randint(3) + min_length (uniform on min_length +
  {0, 1, 2}), then the symbols, then the target. Head at 0 / (0, 0).
- Curriculum (ae `_check_levelup`, at each reset): append total reward - len(target) of the episode just ended to
  `reward_shortfalls`, keep the last `last`; when it holds `last` entries, all >= MIN_REWARD_SHORTFALL_FOR_PROMOTION,
  and min_length < 30: min_length += 1 and the window is emptied (only then). last = 10, threshold -1.0; Reverse
  and RepeatCopy last = 50, threshold -0.1 (reverse.py, repeat_copy.py).
- The constructor's episode: G19's `__init__` calls reset(), so an unplayed episode (total 0, drawn at
  starting_min_length) sits before the first user reset, which records its shortfall -len(target). Only a
  one-symbol target passes a threshold (-1 >= -1.0), so of the registered envs only DuplicatedInput can tell: with
  a drawn length of 2 or 3 (probability 2/3) it promotes after 9 good episodes instead of 10, and every later
  promotion comes one episode earlier too. Here the first reset
  draws that episode from a stream jumped ahead of np_random (G19 drew it before any seed, from an unseeded
  generator), so the episodes' own draws are untouched; to replay a G19 recording exactly, pass its constructor
  target's length through load_curriculum_state (episode_total_reward 0.0, target_length len(target)).
- Per env (base, starting min_length, target; registered reward_threshold, max_episode_steps 200 for all):
  Copy 5, 2, x; 25. DuplicatedInput 5, 2, every 2nd symbol of an input of max(length, 2) // 2 drawn symbols each
  written twice; 9. RepeatCopy 5, 2, x + reversed(x) + x; 75. Reverse 2, 1, reversed(x); 25. ReversedAddition(3)
  3, 2, the column sums LSB first with the final carry appended as one symbol when > 0; 25.

Gymnasium additions: `reset(seed=...)` seeds the input generator; `reset(options=...)` takes `input_data` (a
tape, or a grid as a list of columns, in G19's layout) or `length` (an input of that size from the generator);
`info["target_symbol"]` is the symbol that was due on each write step (the label of LSAE's supervised symbol).
The env terminates itself (terminated=True); Gymnasium's TimeLimit sets truncated=True at 200 steps.

Deviations from G19, all deliberate:
- ReversedAddition's time limit is 2 * input_width + 4 whatever the number of rows (G19), which leaves no time to
  read three rows; `corrected_time_limit=True` makes it rows * input_width + 4. Off by default (G19 semantics).
- ReversedAddition with rows > base is refused: its final carry can reach base, a symbol no action can write.
- The curriculum lives in the instance (G19 before 2020 shared it across instances of a process).
- Random streams differ from G19 (numpy Generator instead of RandomState) but are drawn in G19's order (length,
  then the symbols one per drawn position); compare episodes with `input_data`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

MAX_MIN_LENGTH = 30
"""G19: the curriculum stops promoting once min_length reaches this."""


class AlgorithmicEnv(gym.Env):
    """Shared G19 machinery; subclasses give the layout (tape or grid), the input generator and the target."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi", "human"], "render_fps": 4}
    MOVEMENTS: ClassVar[list[str]] = []
    READ_HEAD_START: Any = 0
    MIN_REWARD_SHORTFALL_FOR_PROMOTION: ClassVar[float] = -1.0
    LAST: ClassVar[int] = 10
    """Curriculum window (G19 `self.last`)."""
    STARTING_MIN_LENGTH: ClassVar[int] = 2
    CHARS: ClassVar[bool] = False
    """Render symbols as letters A, B, ... (G19 tape tasks) rather than digits."""
    SPECIAL_SYMBOLS: ClassVar[tuple[str, ...]] = ()
    """Marker symbols after the blank (LSAE grids); their observation indices are base + 1, base + 2, ..."""

    def __init__(self, base: int = 10, starting_min_length: int | None = None, render_mode: str | None = None):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode is {render_mode!r}; use one of {self.metadata['render_modes']} or None.")
        self.render_mode = render_mode
        self.base = base
        self.last = self.LAST
        self.starting_min_length = self.STARTING_MIN_LENGTH if starting_min_length is None else starting_min_length
        self.min_length = self.starting_min_length
        self.reward_shortfalls: list[float] = []
        self.episode_total_reward: float | None = None
        """None until the constructor's episode is drawn (by the first reset); then the episode's total so far."""
        self.charmap = [chr(ord("A") + i) if self.CHARS else str(i) for i in range(base)] + [" "]
        self.charmap += list(self.SPECIAL_SYMBOLS)
        self.observation_space = spaces.Discrete(base + 1 + len(self.SPECIAL_SYMBOLS))
        self.action_space = spaces.Tuple(
            (spaces.Discrete(len(self.MOVEMENTS)), spaces.Discrete(2), spaces.Discrete(base))
        )
        self.input_data: list[Any] = []
        self.target: list[int] = []
        self.time = 0
        self.read_head_position: Any = self.READ_HEAD_START
        self.write_head_position = 0
        self.last_action: tuple[int, int, int] | None = None
        self.last_reward = 0.0

    # --- what subclasses define -----------------------------------------------------------------------------
    def generate_input_data(self, size: int) -> list[Any]:
        raise NotImplementedError

    def target_from_input_data(self, input_data: list[Any]) -> list[int]:
        raise NotImplementedError

    def _move(self, movement: int) -> None:
        raise NotImplementedError

    def _get_obs(self, pos: Any = None) -> int:
        raise NotImplementedError

    def check_input_data(self, input_data: Any) -> list[Any]:
        raise NotImplementedError

    def render_observation(self) -> str:
        raise NotImplementedError

    # --- G19 rules --------------------------------------------------------------------------------------------
    @property
    def input_width(self) -> int:
        return len(self.input_data)

    @property
    def time_limit(self) -> int:
        """More steps than this end the episode with reward -1 (G19: 'seemingly arbitrary')."""
        return self.input_width + len(self.target) + 4

    def _draw_constructor_episode(self) -> None:
        """The unplayed episode G19's constructor left behind (its reset() at starting_min_length, total 0), whose
        shortfall the first reset records. Drawn from a stream jumped ahead of np_random, so that the episodes'
        own draws stay in G19's order."""
        bits = self.np_random.bit_generator
        episodes_state = bits.state
        bits.state = bits.jumped().state
        try:
            length = int(self.np_random.integers(3)) + self.starting_min_length
            self.target = self.target_from_input_data(self.generate_input_data(length))
        finally:
            bits.state = episodes_state
        self.episode_total_reward = 0.0

    def _check_levelup(self) -> None:
        """Record the finished episode's shortfall and promote min_length when the window allows (G19)."""
        self.reward_shortfalls.append(self.episode_total_reward - len(self.target))
        self.reward_shortfalls = self.reward_shortfalls[-self.last :]
        if (
            len(self.reward_shortfalls) == self.last
            and min(self.reward_shortfalls) >= self.MIN_REWARD_SHORTFALL_FOR_PROMOTION
            and self.min_length < MAX_MIN_LENGTH
        ):
            self.min_length += 1
            self.reward_shortfalls = []

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.int64, dict]:
        super().reset(seed=seed)
        options = dict(options or {})
        if self.episode_total_reward is None:
            self._draw_constructor_episode()
        self._check_levelup()
        self.last_action = None
        self.last_reward = 0.0
        self.write_head_position = 0
        self.episode_total_reward = 0.0
        self.time = 0
        self.generate_episode(options)
        return np.int64(self._get_obs()), {}

    def generate_episode(self, options: dict[str, Any]) -> None:
        """Fill input_data, target and the head position from the options or the generator."""
        unknown = sorted(set(options) - self.known_options())
        if unknown:
            raise ValueError(
                f"reset option {unknown[0]!r} is not known; use {', '.join(sorted(self.known_options()))}."
            )
        if "input_data" in options and "length" in options:
            raise ValueError("reset options `input_data` and `length` exclude each other; give one.")
        if "input_data" in options:
            self.input_data = self.check_input_data(options["input_data"])
        else:
            length = options.get("length")
            if length is None:
                length = int(self.np_random.integers(3)) + self.min_length  # G19: drawn before the symbols
            elif isinstance(length, bool) or not isinstance(length, int | np.integer) or length < 1:
                raise ValueError(f"reset option `length` is {length!r}; give a positive integer.")
            self.input_data = self.generate_input_data(int(length))
        self.read_head_position = self.READ_HEAD_START
        self.target = self.target_from_input_data(self.input_data)

    def known_options(self) -> set[str]:
        return {"input_data", "length"}

    def step(self, action: Any) -> tuple[np.int64, float, bool, bool, dict]:
        if not self.valid_action(action):
            raise ValueError(f"action {action!r} is not in {self.action_space}.")
        inp_act, out_act, pred = (int(a) for a in action)
        self.last_action = (inp_act, out_act, pred)
        done = False
        reward = 0.0
        info: dict[str, Any] = {}
        self.time += 1
        if out_act == 1:
            if self.write_head_position < len(self.target):
                due = self.target[self.write_head_position]
                info["target_symbol"] = due
                correct = pred == due
            else:  # stepping after the end: G19 counts the write as wrong
                correct = False
            if correct:
                reward = 1.0
            else:
                reward = -0.5
                done = True
            self.write_head_position += 1
            if self.write_head_position >= len(self.target):
                done = True
        self._move(inp_act)
        if self.time > self.time_limit:
            reward = -1.0
            done = True
        self.last_reward = reward
        self.episode_total_reward += reward
        if self.render_mode == "human":
            self.render()
        return np.int64(self._get_obs()), reward, done, False, info

    def valid_action(self, action: Any) -> bool:
        """action_space.contains, with a fast path for a tuple of Python ints (the agents' hot loop)."""
        if type(action) is tuple and len(action) == 3 and all(type(a) is int for a in action):
            move, write, symbol = action
            return 0 <= move < len(self.MOVEMENTS) and 0 <= write <= 1 and 0 <= symbol < self.base
        return self.action_space.contains(action)

    # --- state for checkpoints --------------------------------------------------------------------------------
    def curriculum_state(self) -> dict[str, Any]:
        """Everything the next reset depends on besides np_random (plain types, for torch weights_only)."""
        return {
            "min_length": self.min_length,
            "reward_shortfalls": list(self.reward_shortfalls),
            "episode_total_reward": self.episode_total_reward,
            "target_length": len(self.target),
        }

    def load_curriculum_state(self, state: dict[str, Any]) -> None:
        self.min_length = int(state["min_length"])
        self.reward_shortfalls = [float(s) for s in state["reward_shortfalls"]]
        total = state["episode_total_reward"]
        self.episode_total_reward = None if total is None else float(total)
        # Only len(target) of the finished episode matters to the next reset's curriculum update.
        self.target = [0] * int(state["target_length"])

    # --- text rendering ---------------------------------------------------------------------------------------
    def _cell(self, symbol: int | None, here: bool) -> str:
        char = " " if symbol is None else self.charmap[symbol]
        return f"[{char}]" if here else f" {char} "

    def render(self) -> str | None:
        text = self.render_text()
        if self.render_mode == "human":
            print(text)
            return None
        return text

    def render_text(self) -> str:
        """G19's text picture: the input with the read head in brackets, the output so far, the target, the
        last action. Three characters per cell so the lines align."""
        header = f"Total length of input instance: {self.input_width}, step: {self.time}"
        lines = [header, "=" * len(header), self.render_observation()]
        written = self.write_head_position
        output = "".join(
            self._cell(self.target[i] if 0 <= i < written and i < len(self.target) else None, False)
            for i in range(-2, len(self.target) + 2)
        )
        if self.last_action is not None and self.last_action[1] == 1 and 0 < written <= len(self.target):
            symbol = self.last_action[2]
            if symbol != self.target[written - 1]:  # show the wrong symbol that ended the episode
                cells = [output[k : k + 3] for k in range(0, len(output), 3)]
                cells[written - 1 + 2] = f"!{self.charmap[symbol]}!"
                output = "".join(cells)
        lines.append("Output Tape         : " + output)
        targets = [None, None, *self.target, None, None]
        lines.append("Targets             : " + "".join(self._cell(t, False) for t in targets))
        if self.last_action is not None:
            move, write, symbol = self.last_action
            lines.append(f"Current reward      :   {self.last_reward:.3f}")
            lines.append(f"Cumulative reward   :   {self.episode_total_reward:.3f}")
            lines.append(
                f"Action              :   Tuple(move over input: {self.MOVEMENTS[move]}, "
                f"write to the output tape: {bool(write)}, prediction: {self.charmap[symbol]})"
            )
        return "\n".join(lines) + "\n"


# --- tapes ----------------------------------------------------------------------------------------------------
class TapeAlgorithmicEnv(AlgorithmicEnv):
    """A 1-d input tape; position p reads input_data[p], off the tape reads the blank."""

    MOVEMENTS: ClassVar[list[str]] = ["left", "right"]
    READ_HEAD_START = 0

    def _move(self, movement: int) -> None:
        self.read_head_position += 1 if self.MOVEMENTS[movement] == "right" else -1

    def _get_obs(self, pos: int | None = None) -> int:
        pos = self.read_head_position if pos is None else pos
        if 0 <= pos < len(self.input_data):
            return self.input_data[pos]
        return self.base

    def generate_input_data(self, size: int) -> list[int]:
        return [int(s) for s in self.np_random.integers(self.base, size=size)]

    def check_input_data(self, input_data: Any) -> list[int]:
        if not isinstance(input_data, list | tuple | np.ndarray) or len(input_data) == 0:
            raise ValueError("reset option `input_data` must be a non-empty list of symbols for a tape task.")
        tape = [int(s) for s in input_data]
        if any(not 0 <= s < self.base for s in tape):
            raise ValueError(f"reset option `input_data` has a symbol outside range({self.base}): {tape}.")
        return tape

    def render_observation(self) -> str:
        head = self.read_head_position
        cells = "".join(self._cell(self._get_obs(i), i == head) for i in range(-2, self.input_width + 2))
        return "Observation Tape    : " + cells


class CopyEnv(TapeAlgorithmicEnv):
    """Copy the input tape to the output (G19 Copy-v0: base 5, letters)."""

    CHARS = True

    def __init__(self, base: int = 5, starting_min_length: int | None = None, render_mode: str | None = None):
        super().__init__(base, starting_min_length, render_mode)

    def target_from_input_data(self, input_data: list[int]) -> list[int]:
        return list(input_data)


class DuplicatedInputEnv(TapeAlgorithmicEnv):
    """Each symbol appears `duplication` times in a row; write it once (G19 DuplicatedInput-v0)."""

    CHARS = True

    def __init__(
        self,
        duplication: int = 2,
        base: int = 5,
        starting_min_length: int | None = None,
        render_mode: str | None = None,
    ):
        self.duplication = duplication
        super().__init__(base, starting_min_length, render_mode)

    def generate_input_data(self, size: int) -> list[int]:
        # G19: size is raised to at least `duplication`, then rounded down to a multiple of it.
        groups = max(size, self.duplication) // self.duplication
        return [int(s) for s in self.np_random.integers(self.base, size=groups) for _ in range(self.duplication)]

    def target_from_input_data(self, input_data: list[int]) -> list[int]:
        return list(input_data[:: self.duplication])


class RepeatCopyEnv(TapeAlgorithmicEnv):
    """Write x, then x reversed, then x again (G19 RepeatCopy-v0)."""

    CHARS = True
    LAST = 50
    MIN_REWARD_SHORTFALL_FOR_PROMOTION = -0.1

    def __init__(self, base: int = 5, starting_min_length: int | None = None, render_mode: str | None = None):
        super().__init__(base, starting_min_length, render_mode)

    def target_from_input_data(self, input_data: list[int]) -> list[int]:
        return list(input_data) + list(reversed(input_data)) + list(input_data)


class ReverseEnv(TapeAlgorithmicEnv):
    """Write the input reversed (G19 Reverse-v0: base 2, starts at length 1)."""

    CHARS = True
    LAST = 50
    MIN_REWARD_SHORTFALL_FOR_PROMOTION = -0.1
    STARTING_MIN_LENGTH = 1

    def __init__(self, base: int = 2, starting_min_length: int | None = None, render_mode: str | None = None):
        super().__init__(base, starting_min_length, render_mode)

    def target_from_input_data(self, input_data: list[int]) -> list[int]:
        return list(reversed(input_data))


# --- grids ----------------------------------------------------------------------------------------------------
class GridAlgorithmicEnv(AlgorithmicEnv):
    """A 2-d input grid stored as G19 does: input_data[x][y], a list of columns; off the grid reads the blank."""

    MOVEMENTS: ClassVar[list[str]] = ["left", "right", "up", "down"]
    READ_HEAD_START = (0, 0)
    STEPS: ClassVar[dict[str, tuple[int, int]]] = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}

    def __init__(self, rows: int, base: int, starting_min_length: int | None = None, render_mode: str | None = None):
        self.rows = rows
        super().__init__(base, starting_min_length, render_mode)

    def _move(self, movement: int) -> None:
        dx, dy = self.STEPS[self.MOVEMENTS[movement]]
        x, y = self.read_head_position
        self.read_head_position = (x + dx, y + dy)

    def _get_obs(self, pos: tuple[int, int] | None = None) -> int:
        x, y = self.read_head_position if pos is None else pos
        if 0 <= x < len(self.input_data) and 0 <= y < len(self.input_data[x]):
            return self.input_data[x][y]
        return self.base

    def generate_input_data(self, size: int) -> list[list[int]]:
        return [[int(s) for s in self.np_random.integers(self.base, size=self.rows)] for _ in range(size)]

    def check_input_data(self, input_data: Any) -> list[list[int]]:
        message = f"reset option `input_data` must be a non-empty list of columns, each a list of {self.rows} symbols"
        if not isinstance(input_data, list | tuple | np.ndarray) or len(input_data) == 0:
            raise ValueError(message + ".")
        try:
            grid = [[int(s) for s in column] for column in input_data]
        except TypeError:
            raise ValueError(message + ".") from None
        if any(len(column) != self.rows for column in grid):
            raise ValueError(message + f"; got column lengths {[len(c) for c in grid]}.")
        if any(not 0 <= s < self.alphabet_size() for column in grid for s in column):
            raise ValueError(f"reset option `input_data` has a symbol outside range({self.alphabet_size()}): {grid}.")
        return grid

    def alphabet_size(self) -> int:
        """Symbols a given grid may hold: the digits (G19)."""
        return self.base

    def render_observation(self) -> str:
        label = "Observation Grid    : "
        lines = []
        for y in range(-1, self.rows + 1):
            cells = "".join(
                self._cell(self._get_obs((x, y)), (x, y) == tuple(self.read_head_position))
                for x in range(-2, self.input_width + 2)
            )
            lines.append((label if y == -1 else " " * len(label)) + cells)
        return "\n".join(lines)


def add_columns(columns: list[list[int]], base: int) -> list[int]:
    """Sum of the rows of a grid whose column 0 is the least significant digit; digits LSB first, with the final
    carry as one more symbol when it is not zero (G19 ReversedAddition). The carry is at most rows - 1, so it is
    one digit whenever rows <= base."""
    carry, digits = 0, []
    for column in columns:
        total = sum(column) + carry
        digits.append(total % base)
        carry = total // base
    return digits + [carry] if carry > 0 else digits


class ReversedAdditionEnv(GridAlgorithmicEnv):
    """Add `rows` numbers written in columns, least significant digit in column 0, head at the top left; write
    the sum LSB first (G19 ReversedAddition-v0, ReversedAddition3-v0: base 3)."""

    def __init__(
        self,
        rows: int = 2,
        base: int = 3,
        corrected_time_limit: bool = False,
        starting_min_length: int | None = None,
        render_mode: str | None = None,
    ):
        if rows > base:
            raise ValueError(
                f"ReversedAddition with rows={rows} > base={base}: the final carry can reach the base, a symbol no "
                "action can write (G19 appends it as one symbol); use rows <= base."
            )
        self.corrected_time_limit = corrected_time_limit
        super().__init__(rows, base, starting_min_length, render_mode)

    def target_from_input_data(self, input_data: list[list[int]]) -> list[int]:
        return add_columns(input_data, self.base)

    @property
    def time_limit(self) -> int:
        # G19 counts 2 steps per column whatever the rows (and the input, not the target, length): a perfect
        # 3-row policy needs 3 per column. The corrected limit gives `rows` steps per column (a deviation).
        per_column = self.rows if self.corrected_time_limit else 2
        return per_column * self.input_width + 4

    def known_options(self) -> set[str]:
        return super().known_options() | {"carry_free"}

    def generate_episode(self, options: dict[str, Any]) -> None:
        carry_free = bool(options.pop("carry_free", False))
        super().generate_episode(options)
        if carry_free:
            self.input_data = carry_free_columns(self.input_data, self.base, self.np_random, rows=range(self.rows))
            self.target = self.target_from_input_data(self.input_data)


def carry_free_columns(columns: list[list[int]], base: int, rng: np.random.Generator, rows: range) -> list[list[int]]:
    """The talk's easy start for 3-row addition: redraw each column's digits (in `rows`) so that no column sum
    reaches the base, so no carry ever happens."""
    out = [list(c) for c in columns]
    for column in out:
        budget = base - 1
        for y in rows:
            column[y] = int(rng.integers(budget + 1))
            budget -= column[y]
    return out


# --- LSAE grids -----------------------------------------------------------------------------------------------
END, LEFT_ARROW, UP_ARROW, DOWN_ARROW = range(4)
"""Offsets of the LSAE marker symbols after the blank: observation index = base + 1 + offset."""


class LsaeGridEnv(GridAlgorithmicEnv):
    """Base 10 grids with LSAE's layouts and markers, under G19's action, reward, time-out and curriculum rules.

    Markers (observation index base + 1 + k): END `q` (end of the input, LSAE's `q`), and the arrows `<` `^` `v`
    of Walk. The read head starts where the paper's controller starts (`READ_HEAD_START` is per episode)."""

    SPECIAL_SYMBOLS = ("q", "<", "^", "v")

    def __init__(self, rows: int, starting_min_length: int | None = None, render_mode: str | None = None):
        self._start_option: tuple[int, int] | None = None
        super().__init__(rows, 10, starting_min_length, render_mode)

    def marker(self, offset: int) -> int:
        return self.base + 1 + offset

    def alphabet_size(self) -> int:
        return self.observation_space.n  # digits, blank and markers

    def known_options(self) -> set[str]:
        return super().known_options() | {"read_head_start"}

    def generate_episode(self, options: dict[str, Any]) -> None:
        start = options.pop("read_head_start", None)
        if start is not None and "input_data" not in options:
            raise ValueError("reset option `read_head_start` goes with `input_data`; give both or neither.")
        self._start_option = None if start is None else (int(start[0]), int(start[1]))
        super().generate_episode(options)

    def check_input_data(self, input_data: Any) -> list[list[int]]:
        grid = super().check_input_data(input_data)
        self.READ_HEAD_START = self._start_option or self.default_head_start(grid)
        return grid

    def default_head_start(self, grid: list[list[int]]) -> tuple[int, int]:
        raise NotImplementedError


class LsaeArithmeticEnv(LsaeGridEnv):
    """Numbers right-aligned in rows (most significant digit on the left), then one spacer column and a column
    of END markers (LSAE `task_addition`, `task_mul`). The head starts on the top row's least significant digit
    and the answer is written least significant digit first, always len(number) + 1 digits (LSAE keeps the final
    carry even when it is 0). `length` is the number of digits per row."""

    SPACER: ClassVar[int | None] = None
    """Symbol of the spacer column and of unused cells: None = blank (addition), 0 (multiplication: LSAE's grid
    reads 0 everywhere it says nothing)."""

    def digit_columns(self, grid: list[list[int]]) -> list[list[int]]:
        """The columns holding digits, least significant first."""
        ends = [x for x, column in enumerate(grid) if column[0] == self.marker(END)]
        if len(ends) != 1 or ends[0] < 2 or ends[0] != len(grid) - 1:
            raise ValueError(
                "an LSAE arithmetic grid ends with one column of END markers after a spacer column; "
                "build it with layout()."
            )
        return [list(c) for c in reversed(grid[: ends[0] - 1])]

    def layout(self, digit_rows: list[list[int]]) -> list[list[int]]:
        """Grid (list of columns) from rows of digits written most significant first, all the same length."""
        width = len(digit_rows[0])
        spacer = self.base if self.SPACER is None else self.SPACER
        columns = [[row[x] for row in digit_rows] for x in range(width)]
        return columns + [[spacer] * self.rows, [self.marker(END)] * self.rows]

    def default_head_start(self, grid: list[list[int]]) -> tuple[int, int]:
        return (len(grid) - 3, 0)

    def check_input_data(self, input_data: Any) -> list[list[int]]:
        grid = super().check_input_data(input_data)
        self.digit_columns(grid)
        return grid

    @property
    def time_limit(self) -> int:
        # One visit per digit cell (zigzag down one column, up the next) plus the final digit: rows * width
        # steps suffice, as in the corrected ReversedAddition limit.
        return self.rows * self.input_width + 4


class AdditionEnv(LsaeArithmeticEnv):
    """LSAE multi-digit addition: `rows` numbers of equal length (2 rows; 3 for Addition3)."""

    def __init__(self, rows: int = 2, starting_min_length: int | None = None, render_mode: str | None = None):
        super().__init__(rows, starting_min_length, render_mode)

    def generate_input_data(self, size: int) -> list[list[int]]:
        digits = self.np_random.integers(self.base, size=(self.rows, size))
        grid = self.layout([[int(d) for d in row] for row in digits])
        self.READ_HEAD_START = self.default_head_start(grid)
        return grid

    def target_from_input_data(self, input_data: list[list[int]]) -> list[int]:
        columns = self.digit_columns(input_data)
        digits = add_columns(columns, self.base)
        return digits + [0] * (len(columns) + 1 - len(digits))

    def known_options(self) -> set[str]:
        return super().known_options() | {"carry_free"}

    def generate_episode(self, options: dict[str, Any]) -> None:
        carry_free = bool(options.pop("carry_free", False))
        super().generate_episode(options)
        if carry_free:
            width = self.input_width - 2
            easy = carry_free_columns(self.input_data[:width], self.base, self.np_random, rows=range(self.rows))
            self.input_data = easy + self.input_data[width:]
            self.target = self.target_from_input_data(self.input_data)


class MultiplicationEnv(LsaeArithmeticEnv):
    """LSAE single-digit multiplication: the digit (2..9) sits above the number's least significant digit; the
    rest of the top row is 0."""

    SPACER = 0

    def __init__(self, starting_min_length: int | None = None, render_mode: str | None = None):
        super().__init__(2, starting_min_length, render_mode)

    def generate_input_data(self, size: int) -> list[list[int]]:
        number = [int(d) for d in self.np_random.integers(self.base, size=size)]
        digit = int(self.np_random.integers(2, self.base))
        grid = self.layout([[0] * (size - 1) + [digit], number])
        self.READ_HEAD_START = self.default_head_start(grid)
        return grid

    def target_from_input_data(self, input_data: list[list[int]]) -> list[int]:
        columns = self.digit_columns(input_data)
        digit = columns[0][0]
        carry, digits = 0, []
        for column in columns:
            total = column[1] * digit + carry
            digits.append(total % self.base)
            carry = total // self.base
        return digits + [carry]


class WalkEnv(LsaeGridEnv):
    """LSAE Walk: walk right over digits without writing until an arrow (left, up or down), turn, and copy the
    digits along the new direction until the END marker. The grid is filled with random digits (LSAE's board is
    infinite and random; here it is the bounding box of the walk, blank beyond). `length` is LSAE's complexity c:
    (c - 2) // 2 + 1 steps to the arrow, then c - (c - 2) // 2 digits to copy."""

    ARROWS = (LEFT_ARROW, UP_ARROW, DOWN_ARROW)
    DIRECTIONS: ClassVar[dict[int, tuple[int, int]]] = {LEFT_ARROW: (-1, 0), UP_ARROW: (0, -1), DOWN_ARROW: (0, 1)}

    def __init__(self, starting_min_length: int | None = None, render_mode: str | None = None):
        super().__init__(1, starting_min_length, render_mode)

    def check_input_data(self, input_data: Any) -> list[list[int]]:
        if isinstance(input_data, list | tuple) and input_data and isinstance(input_data[0], list | tuple):
            self.rows = len(input_data[0])  # a Walk grid is as tall as its walk
        return super().check_input_data(input_data)

    def generate_input_data(self, size: int) -> list[list[int]]:
        size = max(size, 2)
        approach = (size - 2) // 2 + 1
        copies = size - (size - 2) // 2
        arrow = self.ARROWS[int(self.np_random.integers(len(self.ARROWS)))]
        dx, dy = self.DIRECTIONS[arrow]
        path = [(i, 0) for i in range(approach + 1)] + [(approach + j * dx, j * dy) for j in range(1, copies + 2)]
        xs, ys = [p[0] for p in path], [p[1] for p in path]
        x0, y0 = min(xs), min(ys)
        width, height = max(xs) - x0 + 1, max(ys) - y0 + 1
        digits = self.np_random.integers(self.base, size=(width, height))
        grid = [[int(d) for d in column] for column in digits]
        grid[approach - x0][-y0] = self.marker(arrow)
        end_x, end_y = path[-1]
        grid[end_x - x0][end_y - y0] = self.marker(END)
        self.rows = height
        self.READ_HEAD_START = (-x0, -y0)
        return grid

    def default_head_start(self, grid: list[list[int]]) -> tuple[int, int]:
        return (0, 0)

    def target_from_input_data(self, input_data: list[list[int]]) -> list[int]:
        """Follow the walk from the head's start as LSAE's Game:evaluate does."""
        (x, y), (dx, dy), writing, target = self.READ_HEAD_START, (1, 0), False, []
        # A cell is entered at most once per direction unless the arrows make a loop: bound the walk.
        for _ in range(4 * sum(len(c) for c in input_data) + 4):
            if not (0 <= x < len(input_data) and 0 <= y < len(input_data[x])):
                break
            symbol = input_data[x][y]
            if symbol == self.marker(END):
                break
            offset = symbol - self.base - 1
            if offset in self.DIRECTIONS:
                writing, (dx, dy) = True, self.DIRECTIONS[offset]
            elif writing and symbol < self.base:
                target.append(symbol)
            x, y = x + dx, y + dy
        else:
            raise ValueError("the Walk grid's arrows make a loop that never reaches END or the grid's edge.")
        if not target:
            raise ValueError("the Walk grid has no arrow followed by digits from the head's start; nothing to copy.")
        return target


# --- registry -------------------------------------------------------------------------------------------------
MAX_EPISODE_STEPS = 200
"""G19 registered every algorithmic env with this TimeLimit."""

ENV_SPECS: dict[str, dict[str, Any]] = {
    "Copy": {"entry_point": "rl_tasks.envs:CopyEnv", "reward_threshold": 25.0, "kwargs": {}},
    "DuplicatedInput": {"entry_point": "rl_tasks.envs:DuplicatedInputEnv", "reward_threshold": 9.0, "kwargs": {}},
    "RepeatCopy": {"entry_point": "rl_tasks.envs:RepeatCopyEnv", "reward_threshold": 75.0, "kwargs": {}},
    "Reverse": {"entry_point": "rl_tasks.envs:ReverseEnv", "reward_threshold": 25.0, "kwargs": {}},
    "ReversedAddition": {
        "entry_point": "rl_tasks.envs:ReversedAdditionEnv",
        "reward_threshold": 25.0,
        "kwargs": {"rows": 2},
    },
    "ReversedAddition3": {
        "entry_point": "rl_tasks.envs:ReversedAdditionEnv",
        "reward_threshold": 25.0,
        "kwargs": {"rows": 3},
    },
    # LSAE tasks: no G19 threshold exists; 25 targets as for the G19 arithmetic, 15 for Walk (whose target is
    # about half its complexity, and the curriculum stops at 30).
    "Addition": {"entry_point": "rl_tasks.envs:AdditionEnv", "reward_threshold": 25.0, "kwargs": {"rows": 2}},
    "Addition3": {"entry_point": "rl_tasks.envs:AdditionEnv", "reward_threshold": 25.0, "kwargs": {"rows": 3}},
    "SingleDigitMultiplication": {
        "entry_point": "rl_tasks.envs:MultiplicationEnv",
        "reward_threshold": 25.0,
        "kwargs": {},
    },
    "Walk": {"entry_point": "rl_tasks.envs:WalkEnv", "reward_threshold": 15.0, "kwargs": {}},
}


def env_id(name: str) -> str:
    return f"rl_tasks/{name}-v0"


def register_envs() -> None:
    """Register every env as rl_tasks/<Name>-v0 (idempotent)."""
    for name, spec in ENV_SPECS.items():
        if env_id(name) in gym.registry:
            continue
        gym.register(
            id=env_id(name),
            entry_point=spec["entry_point"],
            reward_threshold=spec["reward_threshold"],
            max_episode_steps=MAX_EPISODE_STEPS,
            kwargs=spec["kwargs"],
        )


def make_env(name: str, time_limit: bool = True, **kwargs: Any) -> gym.Env:
    """gym.make of one of our envs; time_limit=False gives the raw env (no 200-step TimeLimit, no checker), for
    inputs longer than 200 steps allow."""
    register_envs()
    env = gym.make(env_id(name), **kwargs)
    return env if time_limit else env.unwrapped
