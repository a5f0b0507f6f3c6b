"""Train one RL controller for one seed: `train(cfg, report=...) -> RLResult`, plus the command line.

The same function runs in a test, from the command line and inside a Ray Tune trial; it imports neither Ray
nor MLflow. One env instance plays the episodes in sequence (so the G19 curriculum and the 'solved' window see
exactly what gym 0.19 saw); every `batch_episodes` episodes the controller re-reads them (BPTT over the recorded
inputs) and takes one gradient step. Metric names and their meaning: `seedcore.record.RL_METRICS` (stable; the
analysis relies on them); stop reasons: `seedcore.record.STOP_REASONS`.

Usage: python -m rl_tasks.train --env Copy --agent qlearning --seed 0 [--config run.yaml] [--checkpoint-dir D]
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from rl_tasks.agents import ActionCodec, Controller, ControllerConfig
from rl_tasks.config import ConfigError, RLConfig
from rl_tasks.curriculum import LsaeCurriculum
from rl_tasks.envs import MAX_MIN_LENGTH, make_env
from rl_tasks.evaluate import evaluate_length
from rl_tasks.learners import build_learner
from rl_tasks.learners.base import symbol_loss
from rl_tasks.oracle import episodes_to_solve
from seedcore.loop import (
    CHECKPOINT_FILE,
    CHECKPOINT_FORMAT,
    LoopProgress,
    LoopTrainer,
    Report,
    RunResult,
    seed_everything,
)

__all__ = ["CHECKPOINT_FILE", "CHECKPOINT_FORMAT", "RLResult", "Report", "Trainer", "main", "train"]
SOLVED_WINDOW = 100
"""Gym's 'solved': the mean reward over this many consecutive episodes reaches the reward threshold."""
EASY_START_LENGTH = 12
"""easy_start: carry-free inputs stop once the curriculum length passes this."""
FLOOR_SEARCH_EPISODES = 20000
"""floor_budget: how long the perfect policy may take before the env counts as unsolvable with these settings."""


@dataclass
class RLResult(RunResult):
    """`steps` counts episodes; `steps_to_success` is the episodes before the first solving 100-episode window
    (gym's 'episodes before solve')."""

    episodes_to_solve: int | None = None
    """The same number as steps_to_success, under the RL name."""


@dataclass
class Generators:
    """The run's own random streams, from its data seed (seedcore.loop.seed_everything), besides the env's own
    (seeded with the data seed by its first reset). Separate streams, so that evaluating more or less often never
    changes training."""

    act: np.random.Generator
    """Behaviour policy: exploration coins, uniform choices, REINFORCE samples."""
    curriculum: np.random.Generator
    """LSAE lengths and easy-start coins."""
    eval: np.random.Generator
    """Seeds of the test inputs."""


def env_kwargs(cfg: RLConfig) -> dict[str, Any]:
    return {"corrected_time_limit": cfg.corrected_time_limit} if cfg.env.startswith("ReversedAddition") else {}


def build_controller(cfg: RLConfig, raw_env: Any, learner: Any) -> tuple[Controller, ActionCodec]:
    """The controller for this env, with the heads `learner` needs (REINFORCE's baseline: a value head)."""
    codec = ActionCodec(moves=len(raw_env.MOVEMENTS), base=raw_env.base, split=cfg.output_mode == "split")
    model = Controller(
        ControllerConfig(
            n_obs=raw_env.observation_space.n,
            codec=codec,
            core=cfg.controller,
            hidden=cfg.hidden,
            value_head=learner.value_head(),
        )
    )
    return model, codec


@dataclass
class Episode:
    """One played episode, as plain lists (it may wait in a checkpoint for its gradient step)."""

    obs: list[int]
    """(T+1,) observation before each step, and the final one."""
    prev: list[int]
    """(T+1,) previous-action token fed with each observation."""
    choices: list[int]
    labels: list[int]
    """(T,) the symbol that was due at write steps (supervision of the split mode's symbol head), else -1."""
    rewards: list[float]
    values_left: list[int]
    """(T+1,) targets still to write before each step (V of the dynamic discount)."""
    explored: list[bool]
    """(T,) the action differed from the greedy one."""
    terminated: bool
    solved: bool
    total_reward: float
    target_length: int

    @property
    def greedy(self) -> bool:
        return not any(self.explored)


EPISODE_MEANS = ("episode/reward", "episode/steps", "episode/target_length", "episode/solved_fraction")
"""Reported as their means over the episodes since the last report; the loss parts (train/...) as their means
over the gradient steps."""


@dataclass
class Progress(LoopProgress):
    """Trainer state besides model, optimiser, env, curriculum and RNGs; all of it goes into a checkpoint. `step`
    counts episodes."""

    best_length: int = 0
    recent_rewards: list[float] = field(default_factory=list)
    """Total rewards of the last 100 episodes."""
    greedy_outcomes: list[bool] = field(default_factory=list)
    """Whole-target outcomes of the last 100 exploration-free episodes."""
    buffer: list[Episode] = field(default_factory=list)
    """Episodes played since the last gradient step."""


class Trainer(LoopTrainer):
    """One RL controller run: its env, controller, learner, curriculum and gym's 'solved' rule; the loop is
    seedcore's (one step = one episode)."""

    description = "Train one RL controller for one seed."
    config_class = RLConfig
    result_class = RLResult
    resumable = frozenset(
        {
            "max_episodes",
            "max_minutes",
            "patience_episodes",
            "stop_on_success",
            "report_every",
            "checkpoint_every",
            "device",
        }
    )
    missing_checkpoint = "here; pass a checkpoint directory of rl_tasks.train."
    progress_template = (
        "episode {step:>6.0f}  len {curriculum/length:>3.0f}  reward {episode/reward:6.2f}  "
        "mean100 {episode/reward_mean100:6.2f}  solved {episode/solved_fraction:.2f}  [loss {train/loss:.4f}  ]"
        "[eps {train/epsilon:.3f}  ]{train/episodes_per_s:.0f} ep/s"
    )
    progress_evals = ("eval/seq_acc",), ".2f"

    def __init__(self, cfg: RLConfig, report: Report | None, checkpoint_dir: str | None):
        super().__init__(cfg, report, checkpoint_dir)
        self.env = make_env(cfg.env, **env_kwargs(cfg))
        self.raw = self.env.unwrapped
        self.reward_threshold = cfg.reward_threshold or float(self.env.spec.reward_threshold)
        self.learner = build_learner(cfg, self.device)
        self.rngs, (self.model, self.codec) = seed_everything(
            *cfg.run_seeds(), Generators, lambda: build_controller(cfg, self.raw, self.learner)
        )
        self.model.to(self.device)
        if cfg.optimizer == "adam":
            self.optimizer: torch.optim.Optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
        else:
            self.optimizer = torch.optim.SGD(self.model.parameters(), lr=cfg.lr)
        self.lsae = (
            LsaeCurriculum(
                cfg.lsae_start, cfg.lsae_step, cfg.lsae_spread, cfg.lsae_accuracy, cfg.lsae_window, cfg.lsae_max_length
            )
            if cfg.curriculum == "lsae"
            else None
        )
        self.progress = Progress(best_length=self.curriculum_length())
        self.floor_budget_episodes = self.episodes_within_floor_budget()

    def episodes_within_floor_budget(self) -> int | None:
        """floor_budget x the perfect policy's episodes to solve, plus the solved window (None: no such budget)."""
        cfg = self.cfg
        if not cfg.floor_budget:
            return None
        floor = episodes_to_solve(cfg.env, cfg.run_seeds()[1], FLOOR_SEARCH_EPISODES, **env_kwargs(cfg))
        if floor is None:
            raise ConfigError(
                f"floor_budget is {cfg.floor_budget:g}, but a perfect policy does not solve {cfg.env} with these "
                f"settings within {FLOOR_SEARCH_EPISODES} episodes, so there is no floor to multiply "
                "(ReversedAddition3 needs corrected_time_limit: true); set floor_budget: 0 and budget in episodes."
            )
        return math.ceil(cfg.floor_budget * floor) + SOLVED_WINDOW

    # --- curriculum ---------------------------------------------------------------------------------------
    def curriculum_length(self) -> int:
        return self.lsae.length if self.lsae is not None else self.raw.min_length

    def curriculum_at_max(self) -> bool:
        if self.lsae is not None:
            return self.lsae.at_max
        return self.raw.min_length >= MAX_MIN_LENGTH

    def reset_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if self.lsae is not None:
            options["length"] = self.lsae.sample_length(self.rngs.curriculum)
        if self.cfg.easy_start and "carry_free" in self.raw.known_options():
            if self.curriculum_length() <= EASY_START_LENGTH:
                options["carry_free"] = bool(self.rngs.curriculum.random() < 0.5)
        return options

    def stop_reason(self) -> str | None:
        reason = super().stop_reason()
        if reason is None and self.floor_budget_episodes and self.progress.step >= self.floor_budget_episodes:
            return "max_episodes"
        return reason

    # --- one episode --------------------------------------------------------------------------------------
    @torch.inference_mode()
    def play_episode(self) -> Episode:
        """One episode with the behaviour policy: epsilon-greedy (Q-learning) or sampled (REINFORCE)."""
        cfg, codec, rng = self.cfg, self.codec, self.rngs.act
        seed = cfg.run_seeds()[1] if self.progress.step == 0 else None  # the data seed
        obs, _ = self.env.reset(seed=seed, options=self.reset_options())
        raw = self.raw
        episode = Episode(
            obs=[int(obs)],
            prev=[codec.start_token],
            choices=[],
            labels=[],
            rewards=[],
            values_left=[len(raw.target)],
            explored=[],
            terminated=False,
            solved=False,
            total_reward=0.0,
            target_length=len(raw.target),
        )
        self.learner.start_episode(self.progress.step, self.greedy_accuracy())
        state = None
        while True:
            obs_t = torch.tensor([episode.obs[-1]], device=self.device)  # (1,)
            prev_t = torch.tensor([episode.prev[-1]], device=self.device)
            out, state = self.model.step(obs_t, prev_t, state)
            scores = out.choice[0].double().cpu()
            greedy = int(scores.argmax())
            choice = self.learner.choose(scores, greedy, rng)
            symbol = int(out.symbol[0].argmax()) if out.symbol is not None else 0
            action = codec.decode(choice, symbol)
            obs, reward, terminated, truncated, info = self.env.step(action)
            episode.choices.append(choice)
            episode.explored.append(choice != greedy)
            episode.rewards.append(float(reward))
            episode.labels.append(int(info["target_symbol"]) if "target_symbol" in info else -1)
            episode.obs.append(int(obs))
            episode.prev.append(codec.encode_prev(action))
            episode.values_left.append(len(raw.target) - raw.write_head_position)
            if terminated or truncated:
                break
        episode.terminated = bool(terminated)
        episode.total_reward = float(sum(episode.rewards))
        episode.solved = raw.write_head_position == len(raw.target) and episode.total_reward == len(raw.target)
        return episode

    # --- one gradient step ---------------------------------------------------------------------------------
    def batch_tensors(self, episodes: list[Episode]) -> dict[str, torch.Tensor]:
        """Pad the episodes into (T+1, B) inputs and (T, B) step arrays, T the longest episode."""
        steps = max(len(e.rewards) for e in episodes)
        batch = len(episodes)
        obs = np.zeros((steps + 1, batch), dtype=np.int64)
        prev = np.full((steps + 1, batch), self.codec.start_token, dtype=np.int64)
        choices = np.zeros((steps, batch), dtype=np.int64)
        labels = np.full((steps, batch), -1, dtype=np.int64)
        mask = np.zeros((steps, batch), dtype=np.float32)
        for b, e in enumerate(episodes):
            n = len(e.rewards)
            obs[: n + 1, b], prev[: n + 1, b] = e.obs, e.prev
            choices[:n, b], labels[:n, b], mask[:n, b] = e.choices, e.labels, 1.0
        arrays = {"obs": obs, "prev": prev, "choices": choices, "labels": labels, "mask": mask}
        return {key: torch.from_numpy(value).to(self.device) for key, value in arrays.items()}

    def update(self, episodes: list[Episode]) -> dict[str, float]:
        """One optimiser step on the episodes; returns the loss parts (a NaN/inf loss skips the step)."""
        cfg = self.cfg
        batch = self.batch_tensors(episodes)
        mask = batch["mask"]
        out, _ = self.model(batch["obs"], batch["prev"])  # choice: (T+1, B, C)
        loss, parts = self.learner.loss(out, batch, episodes, self.greedy_accuracy())
        if out.symbol is not None:
            labels = batch["labels"]
            writes = (labels >= 0).to(mask.dtype) * mask
            symbol = symbol_loss(out.symbol[:-1], labels, writes)
            parts["train/symbol_loss"] = float(symbol.detach())
            loss = loss + symbol
        parts["train/loss"] = float(loss.detach())
        if not torch.isfinite(loss):
            return parts
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip_norm)
        self.optimizer.step()
        return parts

    def greedy_accuracy(self) -> float:
        outcomes = self.progress.greedy_outcomes
        return float(np.mean(outcomes)) if outcomes else 0.0

    # --- bookkeeping after each episode --------------------------------------------------------------------
    def record(self, episode: Episode) -> None:
        progress = self.progress
        progress.step += 1
        progress.window.add(
            {
                "episode/reward": episode.total_reward,
                "episode/steps": len(episode.rewards),
                "episode/target_length": episode.target_length,
                "episode/solved_fraction": episode.solved,
            }
        )
        progress.recent_rewards = [*progress.recent_rewards[-(SOLVED_WINDOW - 1) :], episode.total_reward]
        if episode.greedy:
            progress.greedy_outcomes = [*progress.greedy_outcomes[-99:], episode.solved]
        if self.lsae is not None:
            self.lsae.record(episode.solved, episode.greedy)
        if self.curriculum_length() > progress.best_length:
            progress.best_length = self.curriculum_length()
            progress.last_advance_step = progress.step
        solved_now = (
            len(progress.recent_rewards) == SOLVED_WINDOW
            and float(np.mean(progress.recent_rewards)) >= self.reward_threshold
        )
        if solved_now and progress.steps_to_success is None:
            progress.steps_to_success = progress.step - SOLVED_WINDOW

    # --- evaluation -----------------------------------------------------------------------------------------
    def evaluate(self, length: int) -> dict[str, float]:
        self.model.eval()
        row = evaluate_length(
            self.model,
            self.codec,
            self.cfg.env,
            env_kwargs(self.cfg),
            length,
            self.cfg.eval_examples,
            self.rngs.eval,
            self.device,
        )
        self.model.train()
        row["step"] = self.progress.step
        for key in ("seq_accuracy", "seq_error", "symbol_accuracy"):
            self.progress.pending_eval[f"eval/{key}@{length}"] = row[key]
        return row

    # --- reporting and checkpoints ------------------------------------------------------------------------
    def metrics(self) -> dict[str, float]:
        progress, window = self.progress, self.progress.window
        out: dict[str, float] = {
            "step": progress.step,
            **window.means(EPISODE_MEANS),
            **window.means(sorted(key for key in window.sums if key.startswith("train/"))),
            "train/episodes_per_s": window.per_second(window.counts.get("episode/reward", 0)),
            "train/env_steps_per_s": window.per_second(window.sums.get("episode/steps", 0)),
            "episode/reward_mean100": float(np.mean(progress.recent_rewards)) if progress.recent_rewards else 0.0,
            "curriculum/length": self.curriculum_length(),
            "train/greedy_accuracy": self.greedy_accuracy(),
            "time/wall_s": progress.wall_s,
            **progress.pending_eval,
            "success": float(progress.steps_to_success is not None),
        }
        out.update(self.learner.metrics(progress.step, self.greedy_accuracy()))
        if progress.steps_to_success is not None:
            out["steps_to_success"] = out["episodes_to_solve"] = progress.steps_to_success
        return out

    def extra_state(self) -> dict[str, Any]:
        return {
            "lsae": self.lsae.state_dict() if self.lsae is not None else None,
            "env": {
                "np_random": self.raw.np_random.bit_generator.state,
                "curriculum": self.raw.curriculum_state(),
            },
        }

    def load_extra(self, state: dict[str, Any]) -> None:
        if self.lsae is not None:
            self.lsae.load_state_dict(state["lsae"])
        self.raw.np_random.bit_generator.state = state["env"]["np_random"]
        self.raw.load_curriculum_state(state["env"]["curriculum"])

    def restore_progress(self, saved: dict[str, Any]) -> Progress:
        saved = dict(saved)
        # Checkpoints written before the shared loop named the episode count `episodes`.
        if "episodes" in saved:
            saved["step"] = saved.pop("episodes")
            saved["last_advance_step"] = saved.pop("last_advance_episode")
        saved["buffer"] = [Episode(**e) for e in saved["buffer"]]
        return super().restore_progress(saved)

    # --- the loop -----------------------------------------------------------------------------------------
    def advance(self) -> int | None:
        cfg, progress = self.cfg, self.progress
        episode = self.play_episode()
        self.record(episode)
        progress.buffer.append(episode)
        if len(progress.buffer) >= cfg.batch_episodes:
            parts = self.update(progress.buffer)
            progress.buffer = []
            if not math.isfinite(parts["train/loss"]):
                return progress.step
            progress.window.add(parts)
        if cfg.eval_every and progress.step % cfg.eval_every == 0:
            for length in cfg.eval_lengths:
                self.evaluate(length)
        return None

    def add_time(self, seconds: float) -> None:
        self.progress.wall_s += seconds
        self.progress.window.seconds += seconds

    def final_eval(self, diverged: bool) -> None:
        if not diverged:  # after divergence the weights are not a policy worth testing
            for length in self.cfg.eval_lengths:
                self.eval_table.append(self.evaluate(length))

    def result_extras(self) -> dict[str, Any]:
        return {"episodes_to_solve": self.progress.steps_to_success}


# The module's interface: `train(cfg, report=...) -> result` (LoopTrainer.train), the CLI and the checkpoint loader.
train, main, load_checkpoint = Trainer.train, Trainer.main, Trainer.load_checkpoint

if __name__ == "__main__":
    sys.exit(main())
