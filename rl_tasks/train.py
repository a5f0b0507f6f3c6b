"""Train one RL controller for one seed: `train(cfg, report=...) -> RLResult`, plus the command line.

The same function runs in a test, from the command line and inside a Ray Tune trial; it imports neither Ray
nor MLflow. One env instance plays the episodes in sequence (so the G19 curriculum and the 'solved' window see
exactly what gym 0.19 saw); every `batch_episodes` episodes the controller re-reads them (BPTT over the recorded
inputs) and takes one gradient step. Metric names (stable; the analysis relies on them):

    step                         episodes done
    episode/reward               mean total reward of the episodes in the report window
    episode/reward_mean100       mean total reward of the last 100 episodes (gym's 'solved' statistic)
    episode/steps                mean env steps per episode in the window
    episode/target_length        mean target length in the window
    episode/solved_fraction      fraction of the window's episodes that wrote the whole target
    curriculum/length            the env's min_length (curriculum: env) or LSAE's complexity (curriculum: lsae)
    train/loss                   mean total loss of the window's gradient steps
    train/q_loss                 Q-learning: 0.5 * squared TD error of the chosen actions
    train/symbol_loss            split mode: cross-entropy of the symbol head at write steps
    train/policy_loss, train/value_loss, train/entropy   REINFORCE
    train/epsilon                Q-learning: the behaviour policy's exploration probability now
    train/greedy_accuracy        whole-target rate of the last 100 episodes played without exploration
    train/episodes_per_s         training throughput over the window (train/env_steps_per_s likewise)
    time/wall_s                  wall time spent training (summed across resumes)
    eval/seq_accuracy@L          greedy policy, fresh inputs of length L: fraction with the whole target right
    eval/seq_error@L             1 - eval/seq_accuracy@L
    eval/symbol_accuracy@L       fraction of target symbols written correctly before the episode ended
    success                      1 once solved (100-episode mean reward >= reward threshold), else 0
    steps_to_success             episodes before the first solving 100-episode window (gym's 'episodes before
                                 solve'; solved is detected 100 episodes later); the same number as
    episodes_to_solve

Usage: python -m rl_tasks.train --env Copy --agent qlearning --seed 0 [--config run.yaml] [--checkpoint-dir D]
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neuralgpu.runtime import (
    build_parser,
    check_resumable,
    global_rng_state,
    load_checkpoint_dir,
    resolve_device,
    run_cli,
    save_atomic,
    seed_globals,
    set_global_rng_state,
)
from rl_tasks.agents import ActionCodec, Controller, ControllerConfig
from rl_tasks.config import RLConfig
from rl_tasks.curriculum import LsaeCurriculum
from rl_tasks.envs import MAX_MIN_LENGTH, make_env
from rl_tasks.evaluate import evaluate_length
from rl_tasks.learners import q_loss, q_penalty, q_targets, reinforce_loss, returns_to_go, symbol_loss

Report = Callable[[dict[str, float], str | None], None]
CHECKPOINT_FILE = "state.pt"
CHECKPOINT_FORMAT = 1
SOLVED_WINDOW = 100
"""Gym's 'solved': the mean reward over this many consecutive episodes reaches the reward threshold."""
EASY_START_LENGTH = 12
"""easy_start: carry-free inputs stop once the curriculum length passes this."""
Q_PENALTY_GATE = 0.95
"""LSAE turns the Q penalty on once the (validation) accuracy reaches this."""


@dataclass
class RLResult:
    success: bool
    steps_to_success: int | None
    """Episodes before the first solving 100-episode window (gym's 'episodes before solve')."""
    episodes_to_solve: int | None
    """The same number, under the RL name."""
    stop_reason: str
    """success, max_episodes, max_minutes, no_progress or diverged."""
    steps: int
    """Episodes done."""
    wall_time_s: float
    final_metrics: dict[str, float]
    eval_table: list[dict[str, float]] = field(default_factory=list)
    diverged_step: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class Generators:
    """Every random stream of a run besides the env's own (seeded by its first reset). Separate streams, so that
    evaluating more or less often never changes training."""

    act: np.random.Generator
    """Behaviour policy: exploration coins, uniform choices, REINFORCE samples."""
    curriculum: np.random.Generator
    """LSAE lengths and easy-start coins."""
    eval: np.random.Generator
    """Seeds of the test inputs."""


def seed_everything(seed: int) -> Generators:
    """Seed Python, NumPy's global state and torch (weight init), and return the run's own generators. The env
    is seeded by `reset(seed=seed)` on the first episode."""
    seed_globals(seed)
    return Generators(
        act=np.random.default_rng([seed, 0]),
        curriculum=np.random.default_rng([seed, 1]),
        eval=np.random.default_rng([seed, 2]),
    )


def env_kwargs(cfg: RLConfig) -> dict[str, Any]:
    return {"corrected_time_limit": cfg.corrected_time_limit} if cfg.env.startswith("ReversedAddition") else {}


def epsilon_at(cfg: RLConfig, episodes: int, greedy_accuracy: float) -> float:
    """The behaviour policy's exploration probability (see RLConfig.exploration)."""
    if cfg.exploration == "constant":
        return cfg.epsilon
    if cfg.exploration == "linear":
        fraction = min(1.0, episodes / cfg.epsilon_decay_episodes) if cfg.epsilon_decay_episodes else 1.0
        return cfg.epsilon + (cfg.epsilon_final - cfg.epsilon) * fraction
    # adaptive: explore as much as the greedy policy still fails, so a perfect policy's episodes stay perfect
    return max(cfg.epsilon_final, cfg.epsilon * (1.0 - greedy_accuracy))


def build_controller(cfg: RLConfig, raw_env: Any) -> tuple[Controller, ActionCodec]:
    codec = ActionCodec(moves=len(raw_env.MOVEMENTS), base=raw_env.base, split=cfg.output_mode == "split")
    model = Controller(
        ControllerConfig(
            n_obs=raw_env.observation_space.n,
            codec=codec,
            core=cfg.controller,
            hidden=cfg.hidden,
            value_head=cfg.agent == "reinforce" and cfg.baseline,
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


@dataclass
class Window:
    """Running sums over the episodes since the last report."""

    episodes: int = 0
    reward: float = 0.0
    steps: int = 0
    target_length: int = 0
    solved: int = 0
    updates: int = 0
    losses: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    def add_episode(self, episode: Episode) -> None:
        self.episodes += 1
        self.reward += episode.total_reward
        self.steps += len(episode.rewards)
        self.target_length += episode.target_length
        self.solved += episode.solved

    def add_update(self, losses: dict[str, float]) -> None:
        self.updates += 1
        for key, value in losses.items():
            self.losses[key] = self.losses.get(key, 0.0) + value

    def means(self) -> dict[str, float]:
        n, u = max(self.episodes, 1), max(self.updates, 1)
        return {
            "episode/reward": self.reward / n,
            "episode/steps": self.steps / n,
            "episode/target_length": self.target_length / n,
            "episode/solved_fraction": self.solved / n,
            **{key: value / u for key, value in sorted(self.losses.items())},
            "train/episodes_per_s": self.episodes / self.seconds if self.seconds > 0 else 0.0,
            "train/env_steps_per_s": self.steps / self.seconds if self.seconds > 0 else 0.0,
        }


@dataclass
class Progress:
    """Trainer state besides model, optimiser, env, curriculum and RNGs; all of it goes into a checkpoint."""

    episodes: int = 0
    wall_s: float = 0.0
    best_length: int = 0
    last_advance_episode: int = 0
    recent_rewards: list[float] = field(default_factory=list)
    """Total rewards of the last 100 episodes."""
    greedy_outcomes: list[bool] = field(default_factory=list)
    """Whole-target outcomes of the last 100 exploration-free episodes."""
    steps_to_success: int | None = None
    window: Window = field(default_factory=Window)
    pending_eval: dict[str, float] = field(default_factory=dict)
    buffer: list[Episode] = field(default_factory=list)
    """Episodes played since the last gradient step."""


class Trainer:
    """Holds one run's state; `run()` is the plain top-to-bottom loop. Use `train()` from outside."""

    def __init__(self, cfg: RLConfig, report: Report | None, checkpoint_dir: str | None):
        self.cfg = cfg
        self.report = report
        self.checkpoint_dir = Path(checkpoint_dir).resolve() if checkpoint_dir else None
        torch.set_num_threads(cfg.threads)
        self.device = resolve_device(cfg.device, fix="use device: cpu or auto (`--device cpu` on the command line)")
        self.rngs = seed_everything(cfg.seed)
        self.env = make_env(cfg.env, **env_kwargs(cfg))
        self.raw = self.env.unwrapped
        self.reward_threshold = cfg.reward_threshold or float(self.env.spec.reward_threshold)
        self.model, self.codec = build_controller(cfg, self.raw)
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
        self.eval_table: list[dict[str, float]] = []

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

    # --- one episode --------------------------------------------------------------------------------------
    @torch.inference_mode()
    def play_episode(self) -> Episode:
        """One episode with the behaviour policy: epsilon-greedy (Q-learning) or sampled (REINFORCE)."""
        cfg, codec, rng = self.cfg, self.codec, self.rngs.act
        seed = cfg.seed if self.progress.episodes == 0 else None
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
        epsilon = epsilon_at(cfg, self.progress.episodes, self.greedy_accuracy())
        state = None
        while True:
            obs_t = torch.tensor([episode.obs[-1]], device=self.device)  # (1,)
            prev_t = torch.tensor([episode.prev[-1]], device=self.device)
            out, state = self.model.step(obs_t, prev_t, state)
            scores = out.choice[0].double().cpu()
            greedy = int(scores.argmax())
            if cfg.agent == "qlearning":
                choice = int(rng.integers(codec.n_choices)) if rng.random() < epsilon else greedy
            else:
                probs = torch.softmax(scores, dim=-1).numpy()
                choice = int(rng.choice(codec.n_choices, p=probs / probs.sum()))
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
        parts: dict[str, float] = {}
        if cfg.agent == "qlearning":
            best = out.choice.detach().max(-1)
            max_q = best.values.double().cpu().numpy()  # (T+1, B)
            # Watkins cuts where the recorded action is not greedy under the current weights (on fresh episodes,
            # exactly the behaviour policy's exploratory steps).
            not_greedy = (best.indices[:-1] != batch["choices"]).cpu().numpy()  # (T, B)
            targets = np.zeros(mask.shape, dtype=np.float64)
            for b, e in enumerate(episodes):
                n = len(e.rewards)
                targets[:n, b] = q_targets(
                    np.asarray(e.rewards),
                    np.asarray(e.values_left, dtype=np.float64),
                    max_q[: n + 1, b],
                    not_greedy[:n, b],
                    bootstrap=not e.terminated,
                    gamma=cfg.gamma,
                    watkins=cfg.q_target == "watkins",
                )
            target_t = torch.from_numpy(targets).to(out.choice.dtype).to(self.device)
            loss = q_loss(out.choice[:-1], batch["choices"], target_t, mask)
            parts["train/q_loss"] = float(loss.detach())
            if cfg.q_penalty > 0 and self.greedy_accuracy() >= Q_PENALTY_GATE:
                loss = loss + cfg.q_penalty * q_penalty(out.choice[:-1], mask)
        else:
            returns = np.zeros(mask.shape, dtype=np.float64)
            for b, e in enumerate(episodes):
                returns[: len(e.rewards), b] = returns_to_go(np.asarray(e.rewards), cfg.reinforce_gamma)
            returns_t = torch.from_numpy(returns).to(out.choice.dtype).to(self.device)
            baseline = out.value[:-1] if out.value is not None else None
            loss, reinforce_parts = reinforce_loss(
                out.choice[:-1], batch["choices"], returns_t, baseline, mask, cfg.normalize_advantage, cfg.entropy_coef
            )
            parts.update(reinforce_parts)
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
        progress.episodes += 1
        progress.window.add_episode(episode)
        progress.recent_rewards = [*progress.recent_rewards[-(SOLVED_WINDOW - 1) :], episode.total_reward]
        if episode.greedy:
            progress.greedy_outcomes = [*progress.greedy_outcomes[-99:], episode.solved]
        if self.lsae is not None:
            self.lsae.record(episode.solved, episode.greedy)
        if self.curriculum_length() > progress.best_length:
            progress.best_length = self.curriculum_length()
            progress.last_advance_episode = progress.episodes
        solved_now = (
            len(progress.recent_rewards) == SOLVED_WINDOW
            and float(np.mean(progress.recent_rewards)) >= self.reward_threshold
        )
        if solved_now and progress.steps_to_success is None:
            progress.steps_to_success = progress.episodes - SOLVED_WINDOW

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
        row["step"] = self.progress.episodes
        for key in ("seq_accuracy", "seq_error", "symbol_accuracy"):
            self.progress.pending_eval[f"eval/{key}@{length}"] = row[key]
        return row

    # --- reporting and checkpoints ------------------------------------------------------------------------
    def metrics(self) -> dict[str, float]:
        progress = self.progress
        out: dict[str, float] = {
            "step": progress.episodes,
            **progress.window.means(),
            "episode/reward_mean100": float(np.mean(progress.recent_rewards)) if progress.recent_rewards else 0.0,
            "curriculum/length": self.curriculum_length(),
            "train/greedy_accuracy": self.greedy_accuracy(),
            "time/wall_s": progress.wall_s,
            **progress.pending_eval,
            "success": float(progress.steps_to_success is not None),
        }
        if self.cfg.agent == "qlearning":
            out["train/epsilon"] = epsilon_at(self.cfg, progress.episodes, self.greedy_accuracy())
        if progress.steps_to_success is not None:
            out["steps_to_success"] = out["episodes_to_solve"] = progress.steps_to_success
        return out

    def emit(self, checkpoint: bool) -> None:
        metrics = self.metrics()
        self.progress.window = Window()
        self.progress.pending_eval = {}
        # Saved after the window reset, so a resumed run starts its next window exactly where this one does.
        path = self.save(self.checkpoint_dir) if checkpoint and self.checkpoint_dir else None
        if self.report is not None:
            self.report(metrics, str(path) if path else None)

    def state_dict(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "config": self.cfg.to_dict(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "lsae": self.lsae.state_dict() if self.lsae is not None else None,
            "progress": dataclasses.asdict(self.progress),
            "eval_table": self.eval_table,
            "env": {
                "np_random": self.raw.np_random.bit_generator.state,
                "curriculum": self.raw.curriculum_state(),
            },
            "rng": {
                **global_rng_state(cuda=False),
                "act": self.rngs.act.bit_generator.state,
                "curriculum": self.rngs.curriculum.bit_generator.state,
                "eval": self.rngs.eval.bit_generator.state,
            },
        }

    def save(self, directory: Path) -> Path:
        """Write the full training state atomically (a killed writer never leaves a torn checkpoint)."""
        save_atomic(self.state_dict(), directory / CHECKPOINT_FILE)
        return directory

    def load(self, directory: str | Path) -> None:
        state = load_checkpoint(directory, self.device)
        path = Path(directory) / CHECKPOINT_FILE
        saved = RLConfig.from_dict(state["config"], source=str(path))
        check_resumable(saved.to_dict(), self.cfg.to_dict(), RESUMABLE_CHANGES, path)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.lsae is not None:
            self.lsae.load_state_dict(state["lsae"])
        progress = dict(state["progress"])
        progress["window"] = Window(**progress["window"])
        progress["buffer"] = [Episode(**e) for e in progress["buffer"]]
        self.progress = Progress(**progress)
        self.eval_table = list(state["eval_table"])
        self.raw.np_random.bit_generator.state = state["env"]["np_random"]
        self.raw.load_curriculum_state(state["env"]["curriculum"])
        rng = state["rng"]
        set_global_rng_state(rng)
        self.rngs.act.bit_generator.state = rng["act"]
        self.rngs.curriculum.bit_generator.state = rng["curriculum"]
        self.rngs.eval.bit_generator.state = rng["eval"]

    # --- the loop -----------------------------------------------------------------------------------------
    def stop_reason(self) -> str | None:
        cfg, progress = self.cfg, self.progress
        if cfg.stop_on_success and progress.steps_to_success is not None:
            return "success"
        if cfg.max_episodes and progress.episodes >= cfg.max_episodes:
            return "max_episodes"
        if cfg.max_minutes and progress.wall_s >= cfg.max_minutes * 60:
            return "max_minutes"
        stalled = progress.episodes - progress.last_advance_episode
        if cfg.patience_episodes and not self.curriculum_at_max() and stalled >= cfg.patience_episodes:
            return "no_progress"
        return None

    def run(self) -> RLResult:
        cfg, progress = self.cfg, self.progress
        diverged_step = None
        reason = self.stop_reason()
        while reason is None:
            started = time.perf_counter()
            episode = self.play_episode()
            self.record(episode)
            progress.buffer.append(episode)
            if len(progress.buffer) >= cfg.batch_episodes:
                parts = self.update(progress.buffer)
                progress.buffer = []
                if not math.isfinite(parts["train/loss"]):
                    diverged_step, reason = progress.episodes, "diverged"
                    break
                progress.window.add_update(parts)
            if cfg.eval_every and progress.episodes % cfg.eval_every == 0:
                for length in cfg.eval_lengths:
                    self.evaluate(length)
            elapsed = time.perf_counter() - started
            progress.wall_s += elapsed
            progress.window.seconds += elapsed
            reason = self.stop_reason()
            if progress.episodes % cfg.report_every == 0 and reason is None:
                self.emit(checkpoint=progress.episodes % cfg.checkpoint_every == 0)
        if reason != "diverged":  # after divergence the weights are not a policy worth testing
            for length in cfg.eval_lengths:
                self.eval_table.append(self.evaluate(length))
        final_metrics = {k: v for k, v in self.metrics().items() if not k.startswith("train/")}
        self.emit(checkpoint=True)
        return RLResult(
            success=progress.steps_to_success is not None,
            steps_to_success=progress.steps_to_success,
            episodes_to_solve=progress.steps_to_success,
            stop_reason="success" if progress.steps_to_success is not None and reason != "diverged" else reason,
            steps=progress.episodes,
            wall_time_s=progress.wall_s,
            final_metrics=final_metrics,
            eval_table=self.eval_table,
            diverged_step=diverged_step,
        )


def load_checkpoint(directory: str | Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    missing = "here; pass a checkpoint directory of rl_tasks.train."
    return load_checkpoint_dir(directory, CHECKPOINT_FILE, device, CHECKPOINT_FORMAT, missing)


# Fields that may differ between a checkpoint and the resuming config: budgets and bookkeeping only.
RESUMABLE_CHANGES = {
    "max_episodes",
    "max_minutes",
    "patience_episodes",
    "stop_on_success",
    "report_every",
    "checkpoint_every",
    "device",
}


def train(
    cfg: RLConfig,
    report: Report | None = None,
    checkpoint_dir: str | None = None,
    resume_from: str | None = None,
) -> RLResult:
    """Train one run. `report(metrics, checkpoint)` is called every `cfg.report_every` episodes and at the end;
    `checkpoint` is the directory of a complete checkpoint written just now (every `cfg.checkpoint_every`
    episodes and at the end, when `checkpoint_dir` is given), else None. `resume_from` continues a checkpoint
    exactly."""
    trainer = Trainer(cfg, report, checkpoint_dir)
    if resume_from:
        trainer.load(resume_from)
    return trainer.run()


# --- command line ----------------------------------------------------------------------------------------
def progress_line(metrics: dict[str, float]) -> str:
    evals = " ".join(f"{k.removeprefix('eval/')}={v:.2f}" for k, v in metrics.items() if k.startswith("eval/seq_acc"))
    epsilon = f"eps {metrics['train/epsilon']:.3f}  " if "train/epsilon" in metrics else ""
    return (
        f"episode {int(metrics['step']):>6}  len {int(metrics['curriculum/length']):>3}  "
        f"reward {metrics['episode/reward']:6.2f}  mean100 {metrics['episode/reward_mean100']:6.2f}  "
        f"solved {metrics['episode/solved_fraction']:.2f}  loss {metrics.get('train/loss', 0.0):.4f}  "
        f"{epsilon}{metrics['train/episodes_per_s']:.0f} ep/s  {evals}"
    ).rstrip()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(RLConfig, "python -m rl_tasks.train", "Train one RL controller for one seed.")
    return run_cli(argv, parser, RLConfig, train, progress_line, load_checkpoint)


if __name__ == "__main__":
    sys.exit(main())
