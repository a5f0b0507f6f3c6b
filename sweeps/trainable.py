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
MEMBER_KEY = "seedpool/member"
"""In every report of a packed trial (resources.pack) about one member (seed): its trial key."""
PACK_CHECKPOINT_KEY = "seedpool/pack_checkpoint"
"""A packed trial's report that only saves its checkpoint (every member's latest), once per step that wrote any."""
NODE_KEY = "seedpool/node_id"
"""In every training report: the Ray node that runs the trial (Tune's own `hostname` and `node_ip` are the same
for several nodes on one host)."""


def run_trial(config: dict[str, Any], finished_keys: frozenset[str] = frozenset()) -> None:
    """config["trial"]: {"trial_key", "trainer", "run_config", "name"}, or {"pack": [those], "trainer", "name"}
    for several seeds trained as one pack (see ray_executor.trial_spec)."""
    trial = config["trial"]
    if "pack" in trial:
        run_pack(trial, finished_keys)
        return
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


def run_pack(trial: dict[str, Any], finished_keys: frozenset[str]) -> None:
    """Several seeds of one cell as one pack. Each member's reports carry its key (MEMBER_KEY) and its final
    result comes as it stops; a checkpoint is the folder of every member's latest one, by key, so a retried or
    restored pack resumes each member from its own (members finished since, in `finished_keys`, are left out)."""
    members = [member for member in trial["pack"] if member["trial_key"] not in finished_keys]
    if not members:
        tune.report({SKIPPED_KEY: 1})
        return
    started, cpu_started = time.perf_counter(), time.process_time()
    spec = TRAINERS[trial["trainer"]]
    config_class = spec.config_class_object()
    cfgs = [config_class.from_dict(m["run_config"], source=f"trial {m['name']}") for m in members]
    node_id = ray.get_runtime_context().get_node_id()

    with tempfile.TemporaryDirectory(prefix="seedpool-pack-") as work:
        root = os.path.join(work, "checkpoint")
        directories = [os.path.join(root, member["trial_key"]) for member in members]
        resume_from: list[str | None] = [None] * len(members)
        checkpoint = tune.get_checkpoint()
        if checkpoint is not None:
            restored = checkpoint.to_directory(os.path.join(work, "resume"))
            candidates = [os.path.join(restored, member["trial_key"]) for member in members]
            resume_from = [path if os.path.isdir(path) else None for path in candidates]

        # A member's report goes at once; the checkpoints its members wrote in one step are saved together after
        # it (one copy of the pack's folder per step, not one per member). The driver has then recorded each
        # member up to that step: a retry from an earlier checkpoint replays steps it drops as already recorded.
        written = [False]

        def reporter(key: str) -> Any:
            def report(metrics: dict[str, Any], checkpoint: str | None) -> None:
                tune.report({**metrics, NODE_KEY: node_id, MEMBER_KEY: key})
                written[0] = written[0] or checkpoint is not None

            return report

        def stepped() -> None:
            if written[0]:
                tune.report({PACK_CHECKPOINT_KEY: 1}, checkpoint=tune.Checkpoint.from_directory(root))
                written[0] = False

        def finished(i: int, result: Any) -> None:
            # The pack's wall and CPU seconds so far, shared out among its members: they trained side by side
            # in one slot, so the members' times add up to the pack's and not to len(members) times it.
            summary = {
                **result.to_dict(),
                "trial_time_s": (time.perf_counter() - started) / len(members),
                "trial_cpu_s": (time.process_time() - cpu_started) / len(members),
            }
            # The checkpoint with this member's final state (its last report wrote it just now) first: Tune
            # registers a report's checkpoint after the driver has seen the report, and the driver logs the
            # member's checkpoint as it records the result.
            written[0] = True
            stepped()
            key = members[i]["trial_key"]
            tune.report({"step": result.steps, MEMBER_KEY: key, RESULT_KEY: json.dumps(summary, default=str)})

        reports = [reporter(member["trial_key"]) for member in members]
        spec.pack_callable()(cfgs, reports, directories, resume_from, finished, stepped)
