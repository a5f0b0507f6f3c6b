"""Tiny runs shared by the trainer tests: configs that train in about a second on a CPU, and report collection."""

from __future__ import annotations

import shutil

from neuralgpu.config import TrainConfig
from rl_tasks.config import RLConfig

TIMING = ("time/wall_s", "train/examples_per_s", "train/episodes_per_s", "train/env_steps_per_s")
"""Metrics that measure time: they differ between identical runs."""


def neuralgpu_config(**overrides) -> TrainConfig:
    values = dict(
        task="badd",
        width=4,
        max_length=7,
        start_length=4,
        max_steps=40,
        report_every=10,
        eval_every=10,
        advance_every=10,
        checkpoint_every=20,
        eval_lengths=[9],
        probes=False,
        success_length=9,
        eval_batch=8,
    )
    return TrainConfig.from_dict({**values, **overrides}, source="test")


def rl_config(**overrides) -> RLConfig:
    values = dict(
        env="Copy",
        hidden=16,
        max_episodes=40,
        batch_episodes=3,  # not a divisor of report/checkpoint intervals: checkpoints hold a part-filled batch
        report_every=10,
        checkpoint_every=20,
        eval_lengths=[6],
        eval_examples=3,
        eval_every=20,
    )
    return RLConfig.from_dict({**values, **overrides}, source="test")


def collect(train, cfg, **kwargs) -> tuple[object, list[dict[str, float]]]:
    """Run `train(cfg, **kwargs)`; its result and every report it made."""
    reports = []
    result = train(cfg, report=lambda metrics, checkpoint: reports.append(dict(metrics)), **kwargs)
    return result, reports


def without_timing(reports: list[dict[str, float]]) -> list[dict[str, float]]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in reports]


def collect_keeping_checkpoint(train, cfg, step: int, directory) -> tuple[object, list[dict[str, float]], object]:
    """`collect` with checkpoints in `directory`/live, keeping a copy of the one written at `step` (returned last:
    its directory) as a resumable snapshot taken mid-run."""
    saved = directory / f"at_step_{step}"
    reports = []

    def keep(metrics, checkpoint):
        reports.append(dict(metrics))
        if checkpoint and metrics["step"] == step:
            shutil.copytree(checkpoint, saved)

    result = train(cfg, report=keep, checkpoint_dir=str(directory / "live"))
    assert (saved / "state.pt").is_file(), f"no checkpoint was written at step {step}"
    return result, reports, saved
