"""What a pool costs beyond its training: start-up, per-trial overhead and the slots' efficiency, on this machine.

One local pool of `--trials` trials, each training for `--seconds` of wall time (a minutes budget, so every trial
trains equally long whatever the load), run by `python -m sweeps run` as a user runs it. Times are read back from
the record (MLflow's run start and end times, the trainer's `wall_time_s`, the Ray worker's `trial_time_s`):

- start-up: from the command's start to the first trial run (the first trial's MLflow run is created when it starts);
- per trial outside the trainer: in the Ray worker (trial_time_s - wall_time_s, median), and in the slots: the
  slot-seconds not spent training while trials ran, (slots x (last end - first start) - sum trainer time) / trials;
- shut-down: from the last trial's end to the command's exit;
- efficiency: the trainer time summed / (slots x the command's wall time), against the ideal 1.0 of a pool that
  did nothing but train (the same-run baseline: the trials' own training time, packed perfectly into the slots).

The machine's load average at the start is printed: the figures are only meaningful on an idle machine.

    python -m bench.pool_overhead [--trials 40] [--seconds 20] [--cpus 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import yaml

from bench.common import REPO, run_pool, trial_runs

NAME = "pool_overhead_bench"


def write_pool(directory: Path, trials: int, seconds: float) -> Path:
    values = yaml.safe_load((REPO / "sweeps" / "configs" / "tiny.yaml").read_text())
    values["name"] = NAME
    values["axes"] = {"nuisance": {"seed": {"start": 0, "stop": trials}}}
    values["base"]["width"] = 6
    values["base"]["checkpoint_every"] = 10**6  # the default pool's rhythm: a checkpoint at the end only
    values["base"]["report_every"] = 50
    values["budget"] = {"minutes": seconds / 60}
    values["tracking"] = {"uri": f"sqlite:///{directory / 'mlflow.db'}", "storage": str(directory / "storage")}
    path = directory / "pool.yaml"
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path


def measure(trials: int, seconds: float, slots: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="pool-bench-") as scratch:
        path = write_pool(Path(scratch), trials, seconds)
        started = time.time()
        run_pool(path)
        ended = time.time()
        runs = trial_runs(Path(scratch) / "mlflow.db", NAME)
    if len(runs) != trials:
        raise RuntimeError(f"expected {trials} trial runs, the record has {len(runs)}")
    first_start = min(run.info.start_time for run in runs) / 1000
    last_end = max(run.info.end_time for run in runs) / 1000
    trainer = sum(run.data.metrics["wall_time_s"] for run in runs)
    wall = ended - started
    return {
        "wall": wall,
        "startup": first_start - started,
        "worker": statistics.median(run.data.metrics["trial_time_s"] - run.data.metrics["wall_time_s"] for run in runs),
        "slots": (slots * (last_end - first_start) - trainer) / trials,
        "shutdown": ended - last_end,
        "trainer": trainer,
        "efficiency": trainer / (slots * wall),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=12, help="trials in the pool (the issue's figure: 40)")
    parser.add_argument("--seconds", type=float, default=10, help="training seconds per trial (the issue's: 20)")
    parser.add_argument("--cpus", type=int, default=len(os.sched_getaffinity(0)), help="slots: CPUs the pool uses")
    args = parser.parse_args(argv)
    load = os.getloadavg()[0]
    print(
        f"\npool overhead: {args.trials} trials x {args.seconds:g} s of training, 1 CPU each, {args.cpus} slots; "
        f"load average at start {load:.2f}"
    )
    row = measure(args.trials, args.seconds, args.cpus)
    ideal = row["trainer"] / args.cpus
    print("| measure | value | target |")
    print("| --- | --- | --- |")
    print(f"| command wall s (ideal: trainer time / slots = {ideal:.1f}) | {row['wall']:.1f} | - |")
    print(f"| start-up: command start -> first trial s | {row['startup']:.1f} | <= 10 |")
    print(f"| per trial in the worker, outside the trainer s (median) | {row['worker']:.2f} | - |")
    print(f"| per trial, slot-s not training while trials ran | {row['slots']:.2f} | <= 0.3 |")
    print(f"| shut-down: last trial end -> command exit s | {row['shutdown']:.1f} | - |")
    print(f"| efficiency: trainer time / (slots x wall) | {row['efficiency']:.3f} | >= 0.95 |")


if __name__ == "__main__":
    main()
