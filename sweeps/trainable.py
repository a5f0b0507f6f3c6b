"""The Ray Tune function trainable: one trial = one call of the trainer's `train(cfg, report=...)`.

It runs in a Ray worker process and never touches MLflow: everything it learns goes to the driver through
`tune.report`, where `sweeps.callback` records it."""

from __future__ import annotations

import json
import os
import tempfile
import time
from typing import Any

import ray
from ray import tune

from sweeps.trainers import TRAINERS

RESULT_KEY = "seedpool/result_json"
"""Final report of a trial: the trainer's TrainResult as JSON, plus `trial_time_s` and `trial_cpu_s`."""
SKIPPED_KEY = "seedpool/skipped"
"""Final report of a trial whose key was already finished when an old Tune experiment was restored."""
NODE_KEY = "seedpool/node_id"
"""In every training report: the Ray node that runs the trial (Tune's own `hostname` and `node_ip` are the same
for several nodes on one host)."""


def run_trial(config: dict[str, Any], finished_keys: frozenset[str] = frozenset()) -> None:
    """config["trial"]: {"trial_key", "trainer", "run_config", "name"} (see ray_executor.trial_spec)."""
    trial = config["trial"]
    if trial["trial_key"] in finished_keys:
        tune.report({SKIPPED_KEY: 1})
        return
    started, cpu_started = time.perf_counter(), time.process_time()
    spec = TRAINERS[trial["trainer"]]
    cfg = spec.config_class_object().from_dict(trial["run_config"], source=f"trial {trial['name']}")
    train = spec.train_callable()
    node_id = ray.get_runtime_context().get_node_id()

    def report(metrics: dict[str, Any], checkpoint: str | None) -> None:
        # tune.report persists the checkpoint to storage before returning, so the trainer may overwrite the
        # same directory at its next checkpoint.
        persisted = tune.Checkpoint.from_directory(checkpoint) if checkpoint else None
        tune.report({**metrics, NODE_KEY: node_id}, checkpoint=persisted)

    with tempfile.TemporaryDirectory(prefix="seedpool-trial-") as work:
        resume_from = None
        checkpoint = tune.get_checkpoint()  # set when Tune retries a crashed trial or restores a sweep
        if checkpoint is not None:
            resume_from = checkpoint.to_directory(os.path.join(work, "resume"))
        result = train(cfg, report=report, checkpoint_dir=os.path.join(work, "checkpoint"), resume_from=resume_from)
    summary = {
        **result.to_dict(),
        "trial_time_s": time.perf_counter() - started,
        # CPU seconds of this worker: on a shared machine, wall time overstates what the trial needs.
        "trial_cpu_s": time.process_time() - cpu_started,
    }
    tune.report({"step": result.steps, RESULT_KEY: json.dumps(summary, default=str)})
