"""Cost per success with and without the hopeless-seed stopping rule, on a real pool where some seeds fail.

The same seeds run twice through `python -m sweeps run`, recorded to two temporary MLflow stores: once with the
full budget for every seed, once with `stopping.patience_steps` (a seed stops when its curriculum has not advanced
for that many steps; rl: episodes). Both records are read back with the analysis package (`analysis.load`), and
the table gives, per arm:

- compute per successful model: all the episodes (and training seconds) every seed spent, over the successes;
- successes lost: seeds that succeed with the full budget but were stopped before (goal 0);
- the analysis's estimate of P(success within the budget): the plain rate, and the Kaplan-Meier estimate that
  treats stopped seeds as censored (stopping is informative, so on the stopped arm it can only overstate).

Default pool: Q-learning (the defaults) on DuplicatedInput, which most seeds solve within the budget, and on
Reverse, which most seeds never leave length 1 of (the copy trap: rl_reverse_science.yaml), so hopeless seeds
run the whole budget without the rule.

    python -m bench.stopping_cost [--seeds 8] [--episodes 6000] [--patience 1500] [--envs DuplicatedInput Reverse]
"""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

import numpy as np
import yaml

from analysis.load import load_trials
from analysis.survival import compute_per_success, fit_km
from bench.common import REPO, run_pool

NAME = "stopping_cost_bench"


def write_pool(directory: Path, envs: list[str], seeds: int, episodes: int, patience: int | None) -> Path:
    values = yaml.safe_load((REPO / "sweeps" / "configs" / "first_look.yaml").read_text())
    values["name"] = NAME
    del values["base"]["env"]
    values["axes"] = {"science": {"env": envs}, "nuisance": {"seed": {"start": 0, "stop": seeds}}}
    values["budget"] = {"steps": episodes}
    if patience:
        values["stopping"] = {"patience_steps": patience}
    values["tracking"] = {"uri": f"sqlite:///{directory / 'mlflow.db'}", "storage": str(directory / "storage")}
    path = directory / "pool.yaml"
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path


def run_arm(directory: Path, envs: list[str], seeds: int, episodes: int, patience: int | None):
    path = write_pool(directory, envs, seeds, episodes, patience)
    run_pool(path)
    return load_trials(NAME, f"sqlite:///{directory / 'mlflow.db'}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=8, help="seeds per task")
    parser.add_argument("--envs", nargs="+", default=["DuplicatedInput", "Reverse"], help="the pool's tasks")
    parser.add_argument("--episodes", type=int, default=6000, help="the budget of every seed")
    parser.add_argument("--patience", type=int, default=1500, help="episodes without a curriculum advance")
    args = parser.parse_args(argv)
    arms = {}
    with tempfile.TemporaryDirectory(prefix="stopping-bench-") as scratch:
        for name, patience in (("full budget", None), (f"stopping, patience {args.patience}", args.patience)):
            folder = Path(scratch) / ("stopped" if patience else "full")
            folder.mkdir()
            arms[name] = run_arm(folder, args.envs, args.seeds, args.episodes, patience)

    def winners(trials) -> set[tuple[str, int]]:  # by task and seed: the rule changes the trial keys
        won = trials[trials["outcome"] == "success"]
        return set(zip(won["env"], won["seed"].astype(int), strict=True))

    won = winners(arms["full budget"])
    print(
        f"\nstopping hopeless seeds: Q-learning on {', '.join(args.envs)}, {args.seeds} seeds each, budget "
        f"{args.episodes} episodes (compute per success: every seed's spend over the successes)"
    )
    print(
        "| arm | successes | episodes per success | training s per success | successes lost | "
        f"P(success in {args.episodes}) plain | Kaplan-Meier |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    baseline = None
    for name, trials in arms.items():
        wins = (trials["outcome"] == "success").to_numpy()
        episodes, _, _ = compute_per_success(trials["steps"].astype(float).to_numpy(), wins)
        seconds, _, _ = compute_per_success(trials["wall_time_s"].astype(float).fillna(0).to_numpy(), wins)
        lost = len(won - winners(trials))
        km = fit_km(trials["steps_to_event"].astype(float).to_numpy(), wins.astype(int))
        within = 1 - float(km.survival_function_at_times(args.episodes).iloc[0])
        baseline = baseline or episodes
        ratio = f" ({episodes / baseline:.2f}x)" if math.isfinite(episodes) else ""
        print(
            f"| {name} | {int(wins.sum())}/{len(trials)} | {episodes:.0f}{ratio} | {seconds:.1f} | {lost} | "
            f"{np.mean(wins):.2f} | {within:.2f} |"
        )


if __name__ == "__main__":
    main()
