"""What the Neural GPU benchmarks share: a training config that trains at one fixed length."""

from __future__ import annotations

from typing import Any

from neuralgpu.config import TrainConfig


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
