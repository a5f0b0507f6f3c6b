"""Ray Tune as the executor: each phase is one Tune experiment whose trials the `RecordingCallback` records.

An experiment's handle is its folder under the sweep's storage; a manifest there lists the trial keys it was
launched with, so that a later invocation knows whether restoring it fits its pool."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from sweeps.expand import Sweep, Trial
from sweeps.session import Session

MANIFEST = "seedpool_trials.json"
"""Written into each Tune experiment folder: the trial keys it was launched with."""


def connect_ray() -> bool:
    """Join $RAY_ADDRESS, or start a local cluster with this machine's CPUs; True when this call started it."""
    import ray

    if ray.is_initialized():
        return False
    quiet = {"log_to_driver": False, "logging_level": logging.WARNING}
    address = os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, **quiet)
        return False
    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, **quiet)
    return True


def quiet_tune() -> None:
    """MLflow is the record: no per-trial csv/json/TensorBoard files, and none of the warnings about them."""
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    # The progress line is ours: no Tune tables (the new output engine ignores verbose=0).
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # Forced snapshots (one per checkpoint with num_to_keep) are cheap next to a training step; don't warn.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # After fit, Tune looks for the per-trial result files disabled above and warns that they are missing.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)


def trial_name(trial: Any) -> str:
    """Tune's trial name and folder: the MLflow run name, with characters awkward in paths replaced."""
    return re.sub(r"[^A-Za-z0-9_.=-]", "_", trial.config["trial"]["name"])


def trial_spec(trial: Trial, trainer: str) -> dict[str, Any]:
    return {"trial_key": trial.key, "trainer": trainer, "run_config": trial.run_config, "name": trial.name}


def make_trainable(sweep: Sweep, finished_keys: frozenset[str]) -> Any:
    from ray import tune

    from sweeps.trainable import run_trial

    resources = sweep.config.resources
    return tune.with_resources(
        tune.with_parameters(run_trial, finished_keys=finished_keys), {"cpu": resources.cpu, "gpu": resources.gpu}
    )


def write_manifest(experiment_path: str, keys: list[str]) -> None:
    import pyarrow.fs

    fs, path = pyarrow.fs.FileSystem.from_uri(experiment_path)
    with fs.open_output_stream(f"{path}/{MANIFEST}") as out:
        out.write(json.dumps(keys).encode())


def read_manifest(experiment_path: str) -> set[str]:
    import pyarrow.fs

    try:
        fs, path = pyarrow.fs.FileSystem.from_uri(experiment_path)
        with fs.open_input_stream(f"{path}/{MANIFEST}") as handle:
            return set(json.loads(handle.read().decode()))
    except (OSError, ValueError):
        return set()


class RayTuneExecutor:
    """Trials as Tune trials on $RAY_ADDRESS (or a local cluster), checkpoints under the sweep's storage."""

    def __init__(self, sweep: Sweep, max_concurrent: int | None = None, stream: TextIO | None = None):
        self.sweep = sweep
        self.max_concurrent = max_concurrent
        self.stream = stream or sys.stdout

    @contextmanager
    def connect(self) -> Iterator[int]:
        import ray

        from sweeps.resources import check_feasible, max_parallel, node_resources
        from sweeps.schema import SweepConfigError

        started_ray = False
        try:
            try:
                started_ray = connect_ray()
                nodes = node_resources(ray.nodes())
                check_feasible(self.sweep.config.resources, nodes, str(self.sweep.path))
            except ConnectionError as exc:
                raise SweepConfigError(f"cannot reach the Ray cluster at RAY_ADDRESS: {exc}") from None
            parallel = max_parallel(self.sweep.config.resources, nodes)
            yield min(parallel, self.max_concurrent) if self.max_concurrent else parallel
        finally:
            if started_ray:
                ray.shutdown()

    def launched_keys(self, handle: str) -> set[str]:
        return read_manifest(handle)

    def restore(self, handle: str, trials: list[Trial], session: Session) -> None:
        """`Tuner.restore` of the experiment `handle`: its unfinished trials resume from their last checkpoints
        (those finished since, in `session.skip`, end at once without recording anything)."""
        from ray import tune

        from sweeps.callback import recording

        quiet_tune()
        if not tune.Tuner.can_restore(handle):
            return
        self._say(f"[{self.sweep.name}] resuming {len(trials)} unfinished trials of {handle}")
        session.recorder.set_parent_tag("tune_experiment", handle)
        try:
            tuner = tune.Tuner.restore(
                handle,
                trainable=make_trainable(self.sweep, session.skip),
                resume_unfinished=True,
                resume_errored=True,
            )
        except Exception as exc:  # a damaged experiment state must not block the pool: start those trials afresh
            self._say(
                f"[{self.sweep.name}] cannot restore {handle} ({exc}); its unfinished trials start again from step 0"
            )
            return
        with recording(session):
            tuner.fit()

    def fresh(self, trials: list[Trial], session: Session) -> None:
        """A new Tune experiment over `trials`, with a manifest of their keys for a later restore."""
        from ray import tune

        from sweeps.callback import RecordingCallback, recording
        from sweeps.tracking import storage_path

        quiet_tune()
        sweep = self.sweep
        storage = storage_path(sweep)
        name = time.strftime("tune-%Y%m%d-%H%M%S")
        tuner = tune.Tuner(
            make_trainable(sweep, frozenset()),
            param_space={"trial": tune.grid_search([trial_spec(t, sweep.trainer.name) for t in trials])},
            tune_config=tune.TuneConfig(
                max_concurrent_trials=self.max_concurrent,
                reuse_actors=True,  # one worker process per slot instead of one per trial (torch import: seconds)
                trial_name_creator=trial_name,
                trial_dirname_creator=trial_name,
            ),
            run_config=tune.RunConfig(
                name=name,
                storage_path=f"{storage}/{sweep.name}",
                verbose=0,
                failure_config=tune.FailureConfig(max_failures=sweep.config.max_failures),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                callbacks=[RecordingCallback(sweep.name)],
            ),
        )
        path = f"{storage}/{sweep.name}/{name}"
        write_manifest(path, [t.key for t in trials])
        session.recorder.set_parent_tag("tune_experiment", path)
        with recording(session):
            tuner.fit()

    def _say(self, message: str) -> None:
        print(message, file=self.stream, flush=True)
