"""The same pool run three ways on this machine, with the same total CPUs: a local Ray instance started by the
driver (the laptop default), a one-node cluster joined with RAY_ADDRESS, and a multi-node cluster of separate
`ray start` nodes sharing the CPUs (tests/cluster.py: token auth, loopback). The table gives the sweep's wall
time and the median trial's own times (the trainer's wall time, and the trial's time in its Ray worker with start
and reports), each as a ratio to local mode: a cluster's cost per trial, measured side by side.

    python -m bench.cluster_overhead [--seeds 4] [--steps 300] [--cpus 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bench.common import REPO, run_pool, trial_runs

sys.path.insert(0, str(REPO / "tests"))  # the test suite's cluster of `ray start` nodes

from cluster import LoopbackCluster  # noqa: E402


def write_pool(directory: Path, seeds: int, steps: int) -> Path:
    values = yaml.safe_load((REPO / "sweeps" / "configs" / "tiny.yaml").read_text())
    values["name"] = "cluster_bench"
    values["axes"]["nuisance"]["seed"] = {"start": 0, "stop": seeds}
    values["budget"] = {"steps": steps}
    values["tracking"] = {"uri": f"sqlite:///{directory / 'mlflow.db'}", "storage": str(directory / "storage")}
    path = directory / "pool.yaml"
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path


def measure_pool(path: Path, env: dict[str, str]) -> dict[str, float]:
    started = time.monotonic()
    run_pool(path, env)
    wall = time.monotonic() - started
    runs = trial_runs(path.parent / "mlflow.db", "cluster_bench")
    return {
        "wall": wall,
        "trials": len(runs),
        "nodes": len({run.data.tags.get("ray_node_id") for run in runs}),
        "trainer": statistics.median(run.data.metrics["wall_time_s"] for run in runs),
        "trial": statistics.median(run.data.metrics["trial_time_s"] for run in runs),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=4, help="seeds per width (2 widths)")
    parser.add_argument("--steps", type=int, default=300, help="training steps per trial")
    parser.add_argument(
        "--cpus",
        type=int,
        default=os.cpu_count(),
        help="the clusters' CPUs (one per node when split); local "
        "mode takes the machine's, so keep the default for a like-for-like table",
    )
    args = parser.parse_args(argv)
    base = {key: value for key, value in os.environ.items() if not key.startswith(("RAY_", "MLFLOW_"))}
    rows = []
    with tempfile.TemporaryDirectory(prefix="cluster-bench-") as scratch:
        root = Path(scratch)

        def measure(label: str, env: dict[str, str]) -> None:
            directory = root / label.replace(" ", "_")
            directory.mkdir()
            rows.append((label, measure_pool(write_pool(directory, args.seeds, args.steps), {**base, **env})))

        measure("local Ray (driver's own)", {})
        with LoopbackCluster() as one:
            one.start(head_cpus=args.cpus, workers=0)
            measure("1 node, RAY_ADDRESS", one.env)
        with LoopbackCluster() as many:
            many.start(head_cpus=1, workers=args.cpus - 1, worker_cpus=1)
            measure(f"{args.cpus} nodes, RAY_ADDRESS", many.env)
    local = rows[0][1]
    print(f"\nthe same pool ({2 * args.seeds} tiny trials of {args.steps} steps, 1 CPU each, {args.cpus} CPUs in all)")
    header = ("setup", "nodes used", "sweep wall s", "trainer s", "ratio", "trial s", "ratio")
    print("{:<26} {:>10} {:>12} {:>10} {:>6} {:>8} {:>6}".format(*header))
    for label, row in rows:
        print(
            f"{label:<26} {row['nodes']:>10} {row['wall']:>12.1f} {row['trainer']:>10.2f} "
            f"{row['trainer'] / local['trainer']:>6.2f} {row['trial']:>8.2f} {row['trial'] / local['trial']:>6.2f}"
        )


if __name__ == "__main__":
    main()
