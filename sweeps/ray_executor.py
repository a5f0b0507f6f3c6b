"""Ray Tune as the executor: each phase is one Tune experiment whose trials the `RecordingCallback` records.

An experiment's handle is its folder under the sweep's storage; a manifest there lists the trial keys it was
launched with, so that a later invocation knows whether restoring it fits its pool."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from sweeps.expand import Sweep, Trial, form_packs
from sweeps.session import Session

MANIFEST = "seedpool_trials.json"
"""Written into each Tune experiment folder: the trial keys it was launched with."""


QUIET = {"log_to_driver": False, "logging_level": logging.WARNING}
SINGLE_MACHINE_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
"""Ray's switch for single-machine clusters (off by default on macOS and Windows): with it at 0 the node's address
is the loopback one, and every Ray server (GCS, raylet, object manager, workers, agents) listens on it alone."""


def connect_ray() -> bool:
    """Join $RAY_ADDRESS, or start a local cluster with the CPUs this process may use; True when this call
    started it."""
    import ray

    if ray.is_initialized():
        return False
    address = os.environ.get("RAY_ADDRESS")
    if address:
        # A cluster on this machine's loopback (another sweep's, the tests') is joined in the same single-machine
        # mode: otherwise Ray looks for it at the machine's network address, where it does not listen.
        with single_machine(enabled=address.rpartition(":")[0] in ("127.0.0.1", "localhost")):
            ray.init(address=address, **QUIET)
        return False
    from sweeps.resources import usable_cpus

    start_local_ray(num_cpus=usable_cpus())
    return True


def start_local_ray(num_cpus: int | None = None) -> None:
    """`ray.init` of a one-machine cluster reachable from this machine only: every Ray process listens on
    127.0.0.1, not on every interface (Ray's default binds its gRPC servers to 0.0.0.0, open to the network)."""
    import ray

    # Ray announces at every start that token authentication is on (it is, with the token it keeps in
    # ~/.ray/auth_token); for a cluster that listens on 127.0.0.1 only, that is noise above the sweep's output.
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    with single_machine():
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, **QUIET)


@contextmanager
def single_machine(enabled: bool = True) -> Iterator[None]:
    """Ray's single-machine mode for the `ray.init` inside: the node's address is the loopback one.

    Ray picks the node's address as it starts, from SINGLE_MACHINE_SWITCH (read at import, so set on the module
    too); the processes it spawns inherit the variable. Both are restored after, so a later join of a remote
    cluster from this process advertises a reachable address again. (`_node_ip_address="127.0.0.1"` alone is not
    enough: Ray replaces a loopback address by the machine's network address unless the switch is off.)"""
    if not enabled:
        yield
        return
    from ray._private import ray_constants

    saved_env, saved_flag = os.environ.get(SINGLE_MACHINE_SWITCH), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[SINGLE_MACHINE_SWITCH] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved_flag
        if saved_env is None:
            os.environ.pop(SINGLE_MACHINE_SWITCH, None)
        else:
            os.environ[SINGLE_MACHINE_SWITCH] = saved_env


class ClusterAuthError(ConnectionError):
    """The cluster at RAY_ADDRESS refused this process's Ray token (or its lack of one)."""


def start_or_join(source: str) -> bool:
    """connect_ray, with its failures as a SweepConfigError that says what failed and how to fix it."""
    import ray

    from seedcore.config import clip
    from sweeps.schema import SweepConfigError

    address = os.environ.get("RAY_ADDRESS")
    try:
        if address and not ray.is_initialized():
            check_reachable(address)
            check_token(address)
        return connect_ray()
    except Exception as exc:  # ray.init raises ConnectionError, ValueError, RuntimeError, OSError, TimeoutError...
        ray.shutdown()  # whatever a failed start left running
        reason = clip(" ".join(str(exc).split()) or type(exc).__name__, 300)
        if isinstance(exc, ClusterAuthError):
            problem = f"the Ray cluster at RAY_ADDRESS={clip(address)} refused this machine's Ray token ({reason})"
            fix = (
                "give this process the cluster's token: `export RAY_AUTH_MODE=token RAY_AUTH_TOKEN=<token>` "
                "(`ray get-auth-token` on the head node prints it; docs/scaling-out.md says where each deployment "
                "keeps it)"
            )
        elif address:
            problem = f"cannot join the Ray cluster at RAY_ADDRESS={clip(address)} ({reason})"
            fix = (
                "set RAY_ADDRESS to the head node's address as `ray status` there prints it (host:port, e.g. "
                "10.0.0.1:6379) and check that this machine reaches it, or unset RAY_ADDRESS to run on a local cluster"
            )
        else:
            problem = f"cannot start a local Ray cluster ({reason})"
            fix = (
                "stop a stale local cluster with `ray stop`, check that the temporary folder (RAY_TMPDIR, TMPDIR or "
                "/tmp) is writable and has space, or join a running cluster by setting RAY_ADDRESS"
            )
        raise SweepConfigError(f"{source}: {problem}. To fix it, {fix}. Nothing was launched or recorded.") from None


def check_reachable(address: str) -> None:
    """Raise ConnectionError unless something answers at a `host:port` address within 10 s: ray.init waits
    minutes on an address where nothing listens. Other forms (auto, ray://...) are left to Ray."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or "://" in address:
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=10).close()
    except OSError as exc:
        raise ConnectionError(f"nothing answers at {address}: {exc.strerror or exc}") from None


def check_token(address: str) -> None:
    """Raise ClusterAuthError when the cluster's GCS at `host:port` refuses this process's token: ray.init would
    retry for a minute, printing a warning a second, and then report only a failed connection.

    Uses Ray's own token lookup (RAY_AUTH_MODE / RAY_AUTH_TOKEN / RAY_AUTH_TOKEN_PATH / ~/.ray/auth_token, as
    ray.init does) and its GCS client; both are internal, so when they are missing or changed the check is skipped
    and ray.init reports what it finds."""
    if "://" in address or not address.rpartition(":")[0]:
        return
    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )
        from ray._raylet import GcsClient
        from ray.exceptions import AuthenticationError
    except ImportError:
        return
    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
    try:
        GcsClient(address=address).internal_kv_get(b"seedpool-token-check", None, timeout=10)
    except AuthenticationError as exc:
        raise ClusterAuthError(str(exc).split(".")[0]) from None
    except Exception:  # anything else (a timeout, an older client): ray.init will say more
        return


def check_shared_storage(storage: str, nodes: list[dict], source: str) -> None:
    """On a cluster of several nodes, a local Tune storage folder must be the same folder on every node (a shared
    mount): trials checkpoint there on their node, and the driver reads the checkpoints back and restores from them.
    Writes a marker file and asks a zero-CPU task on every live node whether it sees it; raises SweepConfigError
    naming the nodes that do not. URIs (s3://, gs://, ...) are left to Ray."""
    alive = [node for node in nodes if node.get("Alive", True)]
    if "://" in storage or len(alive) < 2:
        return
    import uuid

    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from sweeps.schema import SweepConfigError

    os.makedirs(storage, exist_ok=True)
    marker = os.path.join(storage, f".seedpool-shared-{uuid.uuid4().hex}")
    with open(marker, "w") as handle:
        handle.write("written by the sweep driver to check that every Ray node sees this folder\n")
    try:
        sees = ray.remote(num_cpus=0)(os.path.exists)
        answers = [
            sees.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)).remote(marker)
            for node in alive
        ]
        # A node that does not answer in a minute, or dies meanwhile, gets no trials either: not a reason to refuse.
        answered, _ = ray.wait(answers, num_returns=len(answers), timeout=60)
        blind = []
        for node, answer in zip(alive, answers, strict=True):
            try:
                if answer in answered and not ray.get(answer):
                    blind.append(f"{node['NodeID'][:12]} ({node.get('NodeManagerAddress', '?')})")
            except ray.exceptions.RayError:
                continue
    finally:
        os.remove(marker)
    if blind:
        raise SweepConfigError(
            f"{source}: the Ray Tune storage {storage} is a folder that Ray node(s) {', '.join(blind)} do not see "
            f"(of {len(alive)} nodes): trials there could not save checkpoints where the driver and a retry find "
            "them. To fix it, mount one shared folder (NFS, a shared volume) at the same path on every node and set "
            "SEEDPOOL_STORAGE (or the sweep's tracking.storage) to it, or use a URI such as s3://bucket/dir. "
            "Nothing was launched or recorded."
        )


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
    return folder_name(trial.config["trial"]["name"])


def folder_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]", "_", name)


def trial_spec(trial: Trial, trainer: str) -> dict[str, Any]:
    return {"trial_key": trial.key, "trainer": trainer, "run_config": trial.run_config, "name": trial.name}


def pack_spec(pack: list[Trial], trainer: str) -> dict[str, Any]:
    """One Tune trial's config: a trial, or a pack of several (resources.pack; run_trial trains them as one)."""
    if len(pack) == 1:
        return trial_spec(pack[0], trainer)
    members = [trial_spec(trial, trainer) for trial in pack]
    return {"pack": members, "trainer": trainer, "name": f"{pack[0].name}-pack{len(pack)}"}


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


KEEP_CHECKPOINTS = 2
"""Tune's num_to_keep. Tune deletes a trial's oldest checkpoint as it registers a new one, and saves the experiment
state (which names the checkpoint to resume from) only after the step's callbacks, forcing a save every
num_to_keep checkpoints. A driver killed in between leaves a state naming a deleted checkpoint: at most the one
just before the oldest kept, which `bridge_deleted_checkpoints` puts back. With 1 kept, that bridge would be the
newest checkpoint, whose report the driver may not have recorded yet; with 2 it is one whose report it has."""


def bridge_deleted_checkpoints(experiment: str, trial_dirs: list[str]) -> None:
    """Before restoring: for each trial folder, a copy of its oldest kept checkpoint under the number just below
    it, unless that exists. The restored trial then resumes from a state its driver had recorded, instead of
    failing ("does not exist on storage anymore"); a copy nobody names is a few files left in the storage. Local
    storage only: URIs are left to Tune."""
    if "://" in experiment:
        return
    for name in trial_dirs:
        folder = Path(experiment) / name
        kept = sorted(folder.glob("checkpoint_[0-9][0-9][0-9][0-9][0-9][0-9]")) if folder.is_dir() else []
        if not kept:
            continue
        number = int(kept[0].name.removeprefix("checkpoint_"))
        bridge = folder / f"checkpoint_{number - 1:06d}"
        if number > 0 and not bridge.exists():
            shutil.copytree(kept[0], bridge)


class RayTuneExecutor:
    """Trials as Tune trials on $RAY_ADDRESS (or a local cluster), checkpoints under the sweep's storage."""

    def __init__(self, sweep: Sweep, max_concurrent: int | None = None, stream: TextIO | None = None):
        self.sweep = sweep
        self.max_concurrent = max_concurrent
        self.stream = stream or sys.stdout

    @contextmanager
    def connect(self) -> Iterator[int]:
        from sweeps.resources import (
            check_feasible,
            check_local_machine,
            load_warning,
            local_cluster_pending,
            max_parallel,
            node_resources,
        )
        from sweeps.tracking import storage_path

        resources, source = self.sweep.config.resources, str(self.sweep.path)
        check_local_machine(resources, source)  # before Ray starts: seconds, and a cluster to shut down
        warning = load_warning() if local_cluster_pending() else None  # read before Ray's own processes load it
        if warning:
            self._say(warning)
        import ray

        started_ray = False
        try:
            started_ray = start_or_join(source)
            cluster = ray.nodes()
            nodes = node_resources(cluster)
            check_feasible(resources, nodes, source)
            check_shared_storage(storage_path(self.sweep), cluster, source)
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
        # Every trial folder of the experiment: a pack's folder is named after the pack it was launched as.
        folders = [p.name for p in Path(handle).iterdir() if p.is_dir()] if Path(handle).is_dir() else []
        bridge_deleted_checkpoints(handle, folders)
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
        session.settle([t.key for t in trials])

    def fresh(self, trials: list[Trial], session: Session) -> None:
        """A new Tune experiment over `trials`, with a manifest of their keys for a later restore."""
        from ray import tune

        from sweeps.callback import RecordingCallback, recording
        from sweeps.tracking import storage_path

        quiet_tune()
        sweep = self.sweep
        storage = storage_path(sweep)
        name = time.strftime("tune-%Y%m%d-%H%M%S")
        packs = form_packs(trials, sweep.config.resources.pack)
        tuner = tune.Tuner(
            make_trainable(sweep, frozenset()),
            param_space={"trial": tune.grid_search([pack_spec(p, sweep.trainer.name) for p in packs])},
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
                checkpoint_config=tune.CheckpointConfig(num_to_keep=KEEP_CHECKPOINTS),
                callbacks=[RecordingCallback(sweep.name)],
            ),
        )
        path = f"{storage}/{sweep.name}/{name}"
        write_manifest(path, [t.key for t in trials])
        session.recorder.set_parent_tag("tune_experiment", path)
        with recording(session):
            tuner.fit()
        session.settle([t.key for t in trials])

    def _say(self, message: str) -> None:
        print(message, file=self.stream, flush=True)
