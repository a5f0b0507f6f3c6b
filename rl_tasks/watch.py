"""Watch a trained controller act on one fresh input, step by step, as text.

    python -m rl_tasks.watch --checkpoint DIR [--length 10] [--seed 0] [--delay 0.3]

Loads the checkpoint's config and weights, plays one greedy episode on the raw env (no 200-step limit) and prints
the env's text rendering after every step, then the outcome.
"""

from __future__ import annotations

import sys
import time

import torch

from rl_tasks.config import ConfigError, RLConfig
from rl_tasks.envs import make_env
from rl_tasks.learners import build_learner
from rl_tasks.train import build_controller, env_kwargs, load_checkpoint
from seedcore.cli import ArgumentError, Parser


@torch.inference_mode()
def watch(checkpoint: str, length: int, seed: int, delay: float = 0.0, out=None) -> tuple[float, bool]:
    """Play and print one greedy episode (to `out`, default stdout); returns (total reward, whole target written)."""
    out = out or sys.stdout
    state = load_checkpoint(checkpoint)
    cfg = RLConfig.from_dict(state["config"], source=checkpoint)
    env = make_env(cfg.env, time_limit=False, render_mode="ansi", **env_kwargs(cfg))
    model, codec = build_controller(cfg, env, build_learner(cfg, torch.device("cpu")))
    model.load_state_dict(state["model"])
    model.eval()
    obs, _ = env.reset(seed=seed, options={"length": length})
    print(env.render(), file=out)
    prev, hidden, total, done = codec.start_token, None, 0.0, False
    while not done:
        output, hidden = model.step(torch.tensor([int(obs)]), torch.tensor([prev]), hidden)
        symbol = int(output.symbol[0].argmax()) if output.symbol is not None else 0
        action = codec.decode(int(output.choice[0].argmax()), symbol)
        obs, reward, terminated, truncated, _ = env.step(action)
        prev, total, done = codec.encode_prev(action), total + reward, terminated or truncated
        print(env.render(), file=out, flush=True)
        if delay:
            time.sleep(delay)
    solved = env.write_head_position == len(env.target) and total == len(env.target)
    print(
        f"{cfg.env}, input length {length}: reward {total:g} of {len(env.target)}, "
        f"{'whole target written' if solved else 'failed'} in {env.time} steps.",
        file=out,
    )
    return total, solved


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m rl_tasks.watch", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="checkpoint directory written by rl_tasks.train")
    parser.add_argument("--length", type=int, default=10, help="input length (default: 10)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the input (default: 0)")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds to pause after each step (default: 0)")
    try:
        args = parser.parse_args(argv)
        if args.length < 1:
            raise ArgumentError(f"--length is {args.length}; give a positive input length")
        watch(args.checkpoint, args.length, args.seed, args.delay)
    except (ArgumentError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
