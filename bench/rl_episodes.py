"""How fast the RL trainer plays and learns: episodes per second per task and learner, on one CPU thread.

Each cell trains one seed of the RLConfig defaults (G19's own curriculum, from its first episode) for `--seconds`
of training, without stopping at success, and reads the trainer's own clock (`time/wall_s`, training only, not
the final test). Episodes get longer as the curriculum grows, so a cell's rate is that of the first seconds of a
run, where a pool spends most of its episodes; env steps per second (episodes x mean episode steps) is the rate
that stays comparable across lengths. A Q-learning episode is one forward per step while playing plus one
BPTT pass per batch of 4 episodes; REINFORCE the same.

    python -m bench.rl_episodes [--seconds 2] [--tasks Copy Reverse ...] [--agents qlearning reinforce]
"""

from __future__ import annotations

import argparse
import os

import torch

from rl_tasks import ENV_NAMES
from rl_tasks.config import AGENTS, RLConfig
from rl_tasks.train import train


def measure(env: str, agent: str, seconds: float) -> dict[str, float]:
    """One seed trained for `seconds`: episodes, env steps and training seconds per the trainer's clock."""
    cfg = RLConfig(
        env=env,
        agent=agent,
        corrected_time_limit=env == "ReversedAddition3",
        max_episodes=0,
        max_minutes=seconds / 60,
        stop_on_success=False,
        eval_lengths=(10,),
        eval_examples=1,
        report_every=10**9,  # one report, at the end: its means cover the whole run
        threads=1,
    )
    result = train(cfg, report=None)
    metrics = result.final_metrics
    wall = metrics["time/wall_s"]
    return {
        "episodes": result.steps,
        "episodes_per_s": result.steps / wall,
        "env_steps_per_s": result.steps * metrics["episode/steps"] / wall,
        "length": metrics["curriculum/length"],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="training seconds per cell")
    parser.add_argument("--tasks", nargs="+", default=list(ENV_NAMES), choices=ENV_NAMES)
    parser.add_argument("--agents", nargs="+", default=list(AGENTS), choices=AGENTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print(f"RL trainer throughput: {args.seconds:g} s of training per cell, 1 thread, load {os.getloadavg()[0]:.1f}")
    print(f"{'task':<26} {'learner':<10} {'episodes/s':>10} {'env steps/s':>11} {'episodes':>8} {'length':>6}")
    for env in args.tasks:
        for agent in args.agents:
            row = measure(env, agent, args.seconds)
            print(
                f"{env:<26} {agent:<10} {row['episodes_per_s']:>10.0f} {row['env_steps_per_s']:>11.0f} "
                f"{row['episodes']:>8.0f} {row['length']:>6.0f}"
            )


if __name__ == "__main__":
    main()
