"""How often, and how fast, the RL controller solves the G19 tasks, beside a perfect policy's floor.

For each task and seed it runs `python -m rl_tasks.train` in a subprocess (one thread each, `--jobs` at a time)
and reads the JSON summary; then one row per task:

    solved         seeds solved by gym's rule (100-episode mean reward >= the task's reward threshold)
    episodes       median episodes before the solving window (gym's 'episodes before solve'), solved seeds only
    wall s         median training wall time until solved, solved seeds only (machine- and load-dependent)
    acc@L          greedy sequence accuracy on fresh inputs of length L at the end, mean over all seeds
    floor          median episodes for the hand-coded perfect policy, same seeds: the env curriculum's minimum

    python -m bench.rl_solve [--tasks Copy Reverse] [--seeds 5] [--max-minutes 1] [--max-episodes 20000]
                             [--jobs 2] [--set key=value ...] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

TASKS = ("Copy", "DuplicatedInput", "Reverse", "RepeatCopy", "ReversedAddition")
EVAL_LENGTHS = (100, 500)


def train_command(task: str, seed: int, args: argparse.Namespace) -> list[str]:
    command = [sys.executable, "-m", "rl_tasks.train", "--quiet", "--env", task, "--seed", str(seed)]
    command += ["--max-episodes", str(args.max_episodes), "--max-minutes", str(args.max_minutes), "--threads", "1"]
    command += ["--eval-lengths", *map(str, EVAL_LENGTHS), "--eval-examples", str(args.eval_examples)]
    for setting in args.set:
        key, _, value = setting.partition("=")
        command += [f"--{key.replace('_', '-')}", value]
    return command


def run_one(task: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    done = subprocess.run(train_command(task, seed, args), capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{task} seed {seed} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    summary = json.loads(done.stdout)
    accuracy = {row["length"]: row["seq_accuracy"] for row in summary["eval_table"]}
    return {
        "task": task,
        "seed": seed,
        "success": summary["success"],
        "episodes_to_solve": summary["episodes_to_solve"],
        "episodes": summary["steps"],
        "wall_time_s": summary["wall_time_s"],
        "stop_reason": summary["stop_reason"],
        **{f"seq_accuracy@{length}": accuracy.get(length) for length in EVAL_LENGTHS},
    }


def floor(task: str, seeds: list[int], max_episodes: int) -> float | None:
    from rl_tasks.oracle import episodes_to_solve

    solved = [e for e in (episodes_to_solve(task, seed, max_episodes) for seed in seeds) if e is not None]
    return statistics.median(solved) if solved else None


def summarise(task: str, runs: list[dict[str, Any]], floor_episodes: float | None) -> dict[str, Any]:
    solved = [r for r in runs if r["success"]]

    def median(key: str) -> float | None:
        return statistics.median(r[key] for r in solved) if solved else None

    return {
        "task": task,
        "solved": len(solved),
        "seeds": len(runs),
        "median_episodes": median("episodes_to_solve"),
        "median_wall_s": median("wall_time_s"),
        **{
            f"seq_accuracy@{length}": statistics.fmean(r[f"seq_accuracy@{length}"] or 0.0 for r in runs)
            for length in EVAL_LENGTHS
        },
        "floor_episodes": floor_episodes,
    }


def format_table(rows: list[dict[str, Any]]) -> str:
    def cell(value: float | None, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    header = (
        f"{'task':<17} {'solved':>7} {'episodes':>9} {'wall s':>7} "
        + " ".join(f"{'acc@' + str(n):>8}" for n in EVAL_LENGTHS)
        + f" {'floor':>7}"
    )
    lines = [header]
    for row in rows:
        lines.append(
            f"{row['task']:<17} {str(row['solved']) + '/' + str(row['seeds']):>7} "
            f"{cell(row['median_episodes'], '.0f'):>9} {cell(row['median_wall_s'], '.1f'):>7} "
            + " ".join(f"{row[f'seq_accuracy@{n}']:>8.2f}" for n in EVAL_LENGTHS)
            + f" {cell(row['floor_episodes'], '.0f'):>7}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 per task (default: 5)")
    parser.add_argument("--max-minutes", type=float, default=1.0, help="training minutes per run (default: 1)")
    parser.add_argument("--max-episodes", type=int, default=20000, help="episodes per run (default: 20000)")
    parser.add_argument("--eval-examples", type=int, default=20, help="test inputs per length (default: 20)")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time, one CPU thread each (default: 2)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="extra RLConfig fields")
    parser.add_argument("--json", help="also write every run and the table rows to this file")
    args = parser.parse_args(argv)

    seeds = list(range(args.seeds))
    jobs = [(task, seed) for task in args.tasks for seed in seeds]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        runs = list(pool.map(lambda job: run_one(*job, args), jobs))
    rows = [
        summarise(task, [r for r in runs if r["task"] == task], floor(task, seeds, args.max_episodes))
        for task in args.tasks
    ]
    settings = " ".join(args.set) or "defaults"
    print(
        f"RL controller vs perfect policy: {args.seeds} seeds, budget {args.max_minutes:g} min or "
        f"{args.max_episodes} episodes per run, {args.jobs} runs at a time, RLConfig {settings}"
    )
    print(format_table(rows))
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"runs": runs, "rows": rows, "args": vars(args)}, out, indent=2)


if __name__ == "__main__":
    main()
