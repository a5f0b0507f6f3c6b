"""What the benchmarks share: a Neural GPU training config at one fixed length, and a pool run as a user runs it
(`python -m sweeps run`) with its trial runs read back from the MLflow record."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from neuralgpu.config import TrainConfig

REPO = Path(__file__).resolve().parents[1]


def fixed_length_config(model: str, width: int, length: int, batch: int, threads: int, **changes: Any) -> TrainConfig:
    """badd at exactly `length` (no curriculum), `batch` examples per step, and budgets too large to stop a
    benchmark; `changes` sets any other TrainConfig field."""
    return TrainConfig(
        model=model,
        task="badd",
        width=width,
        batch_size=batch,
        min_length=length,
        start_length=length,
        max_length=length,
        curriculum="none",
        threads=threads,
        max_steps=10**9,
        **changes,
    )


def run_pool(path: Path, env: dict[str, str] | None = None) -> None:
    """`python -m sweeps run path` from the repository root; raises with the output's tail if it fails."""
    done = subprocess.run(
        [sys.executable, "-m", "sweeps", "run", str(path)], cwd=REPO, env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"the pool failed ({done.returncode}):\n{done.stdout[-3000:]}{done.stderr[-3000:]}")


def trial_runs(store: Path, experiment: str) -> list[Any]:
    """The trial runs of `experiment` in the sqlite store `store`, read with MLflow's own client."""
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{store}")
    found = client.get_experiment_by_name(experiment)
    return client.search_runs([found.experiment_id], "tags.`seedpool.role` = 'trial'", max_results=1000)
