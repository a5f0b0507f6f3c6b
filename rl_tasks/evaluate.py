"""Greedy generalisation test: the controller plays fresh inputs of one length, all episodes in lockstep."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from rl_tasks.agents import ActionCodec, Controller
from rl_tasks.envs import make_env


@torch.inference_mode()
def evaluate_length(
    model: Controller,
    codec: ActionCodec,
    env_name: str,
    env_kwargs: dict[str, Any],
    length: int,
    examples: int,
    rng: np.random.Generator,
    device: torch.device,
) -> dict[str, float]:
    """Sequence accuracy (whole target written), symbol accuracy (fraction of the target written correctly
    before the episode ended) and mean steps, over `examples` greedy episodes at input length `length`. Raw envs:
    no 200-step TimeLimit, so long inputs get the env's own time limit only."""
    envs = [make_env(env_name, time_limit=False, **env_kwargs) for _ in range(examples)]
    seeds = rng.integers(2**31, size=examples)
    obs = [int(env.reset(seed=int(seed), options={"length": length})[0]) for env, seed in zip(envs, seeds, strict=True)]
    prev = [codec.start_token] * examples
    correct = np.zeros(examples)
    steps = np.zeros(examples)
    active = np.ones(examples, dtype=bool)
    state = None
    while active.any():
        obs_t = torch.tensor(obs, dtype=torch.long, device=device)  # (B,)
        prev_t = torch.tensor(prev, dtype=torch.long, device=device)
        out, state = model.step(obs_t, prev_t, state)
        choices = out.choice.argmax(-1).tolist()
        symbols = out.symbol.argmax(-1).tolist() if out.symbol is not None else [0] * examples
        for b in np.flatnonzero(active):
            action = codec.decode(choices[b], symbols[b])
            ob, reward, terminated, truncated, _ = envs[b].step(action)
            obs[b], prev[b] = int(ob), codec.encode_prev(action)
            correct[b] += reward == 1.0
            steps[b] += 1
            active[b] = not (terminated or truncated)
    target_lengths = np.array([len(env.target) for env in envs])
    solved = correct == target_lengths
    return {
        "length": length,
        "seq_accuracy": float(solved.mean()),
        "seq_error": float(1.0 - solved.mean()),
        "symbol_accuracy": float((correct / target_lengths).mean()),
        "mean_steps": float(steps.mean()),
        "examples": examples,
    }
