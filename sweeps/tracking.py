"""MLflow record of a sweep, written by the driver only (sqlite allows one writer; see
shared/reference/ray_mlflow.md). No Ray here: the Tune callback in `sweeps.callback` feeds a `SweepRecorder`.

Layout: one experiment per sweep name; one parent run per `run` invocation; one child run per trial, tagged
with its stable `trial_key` and found again by it, so a resumed or grown sweep never records a trial twice.

The names written (metrics, tags, stop reasons) are the record's vocabulary, `seedcore.record`; metric names are
the trainer's with `@` spelled `_at_` (`mlflow_key`).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import shlex
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, Run, RunTag
from mlflow.exceptions import MlflowException

from seedcore.record import (
    AXES_TAG,
    ERROR,
    EXPERIMENT_KIND_TAG,
    KEY_TAG,
    LAST_STEP_TAG,
    NOTE_TAG,
    OVERRIDES_TAG,
    PARENT_TAG,
    REPO_ROOT,
    ROLE_PARENT,
    ROLE_SWEEP,
    ROLE_TAG,
    ROLE_TRIAL,
    RUNS_DIR,
    STOP_REASON_TAG,
    STOPPED_STEP_TAG,
    SWEEP_TAG,
    TRAINER_TAG,
    default_storage,
    default_tracking_uri,
    is_trainer_metric,
    mlflow_key,
)
from sweeps.expand import Sweep, Trial
from sweeps.journal import Journal, Op, leftovers, read
from sweeps.summary import format_markdown

TRAINING_EXPERIMENT = "custom_model_development"
"""The experiment kind (EXPERIMENT_KIND_TAG) of a sweep. MLflow 3's UI opens an experiment of kind
`genai_development` (or of none) on the GenAI overview and traces, one of kind `custom_model_development` on its
runs. MLflow 3.17's UI decides by its own "GenAI / Machine learning" sidebar switch instead (kept in the browser;
the URL's `?workflowType=machine_learning` overrides it), so `ui_link` carries that too."""
MAX_METRICS_PER_BATCH = 1000  # MLflow's log_batch limits
MAX_PARAMS_PER_BATCH = 100
FLUSH_EVERY_S = 5.0
FLUSH_EVERY_POINTS = 2000


def _absolute(path: str) -> str:
    return str(Path(path) if Path(path).is_absolute() else REPO_ROOT / path)


def tracking_uri(sweep: Sweep) -> str:
    """tracking.uri, else $MLFLOW_TRACKING_URI, else sqlite:///<repo>/runs/mlflow.db; sqlite paths made absolute."""
    uri = sweep.config.tracking.uri or default_tracking_uri()
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return f"sqlite:///{_absolute(uri.removeprefix('sqlite:///'))}"
    return uri


def storage_path(sweep: Sweep) -> str:
    """Ray Tune storage root for this sweep's trials and checkpoints: tracking.storage, else $SEEDPOOL_STORAGE,
    else <repo>/runs; local paths made absolute."""
    storage = sweep.config.tracking.storage or default_storage()
    return storage if "://" in storage else _absolute(storage)


def ui_link(uri: str, experiment_id: str | None) -> str | None:
    """The experiment's runs in MLflow's UI: on the tracking server itself, or for a local sqlite store on the
    `make mlflow-ui` server (127.0.0.1:$MLFLOW_PORT, default 5000). None for other stores or no experiment."""
    if experiment_id is None:
        return None
    if uri.startswith(("http://", "https://")):
        base = uri.rstrip("/")
    elif uri.startswith("sqlite:"):
        base = f"http://127.0.0.1:{os.environ.get('MLFLOW_PORT', '5000')}"
    else:
        return None
    return f"{base}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"


def sqlite_file(uri: str) -> Path | None:
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


def git_commit() -> str:
    """HEAD of the repository, with `-dirty` when tracked files changed; `unknown` outside git."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    try:
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        dirty = False
    return commit + ("-dirty" if dirty else "")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class SweepBusyError(RuntimeError):
    """Another live driver is recording this sweep."""


@contextmanager
def local_store_warmed(uri: str, enabled: bool = True) -> Iterator[Callable[[], None]]:
    """Build (or check) a local sqlite store's schema in a thread while the caller starts Ray: seconds each, and
    Ray's mostly waiting on its processes. Yields `wait`, to call before opening the store (two threads creating
    one schema would collide); it is also waited for on leaving, so a failure elsewhere never leaves a schema half
    built, and a database this built is removed again when the caller fails before waiting (Ray did not start:
    nothing was recorded, and no empty store is left behind). A failure here is left for the store's opening to
    report. Other URIs (servers) are not touched: a server that is away is reported by the opening, without a
    thread retrying it meanwhile. `enabled=False`: no thread; the store is built when it is opened."""
    db = sqlite_file(uri)
    if db is None or not enabled:
        yield lambda: None
        return
    created = not db.exists()
    waited = False

    def wait() -> None:
        nonlocal waited
        thread.join()
        waited = True

    # MLflow announces the schema's creation at INFO; from a thread those lines would land in the middle of
    # whatever the caller prints meanwhile (its error, if Ray fails).
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)

    def build() -> None:
        try:
            db.parent.mkdir(parents=True, exist_ok=True)
            MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
        except Exception:  # noqa: BLE001 - open_store meets the same error and explains it
            pass

    thread = threading.Thread(target=build, name="mlflow-schema", daemon=True)
    thread.start()
    try:
        yield wait
    except BaseException:
        thread.join()
        if created and not waited:
            db.unlink(missing_ok=True)
        raise
    thread.join()


class Store:
    """The sweep's MLflow experiment. `create=False` never creates a database or an experiment."""

    def __init__(self, uri: str, sweep_name: str, create: bool = True):
        self.uri = uri
        self.sweep_name = sweep_name
        db = sqlite_file(uri)
        self.exists = db is None or db.is_file()
        self.client: MlflowClient | None = None
        self.experiment_id: str | None = None
        if not self.exists and not create:
            return
        if db is not None:
            db.parent.mkdir(parents=True, exist_ok=True)
        self.client = MlflowClient(tracking_uri=uri)
        experiment = self.client.get_experiment_by_name(sweep_name)
        if experiment is not None:
            self.experiment_id = experiment.experiment_id
            if create and experiment.tags.get(EXPERIMENT_KIND_TAG) != TRAINING_EXPERIMENT:  # recorded before the tag
                self.client.set_experiment_tag(self.experiment_id, EXPERIMENT_KIND_TAG, TRAINING_EXPERIMENT)
        elif create:
            # A local store keeps artifacts next to the database; MLflow's default is ./mlruns in whatever
            # directory the process happens to run in.
            location = (db.parent / "mlartifacts" / sweep_name).as_uri() if db is not None else None
            self.experiment_id = self.client.create_experiment(
                sweep_name,
                artifact_location=location,
                tags={ROLE_TAG: ROLE_SWEEP, EXPERIMENT_KIND_TAG: TRAINING_EXPERIMENT},
            )

    def _search(self, filter_string: str) -> list[Run]:
        if self.client is None or self.experiment_id is None:
            return []
        runs, token = [], None
        while True:
            page = self.client.search_runs(
                [self.experiment_id], filter_string=filter_string, max_results=1000, page_token=token
            )
            runs.extend(page)
            token = page.token
            if not token:
                return runs

    def trial_runs(self) -> dict[str, Run]:
        """trial key -> its child run (one query for the whole sweep; the newest wins if ever doubled)."""
        runs = sorted(self._search(f"tags.`{ROLE_TAG}` = '{ROLE_TRIAL}'"), key=lambda r: r.info.start_time or 0)
        return {run.data.tags[KEY_TAG]: run for run in runs if KEY_TAG in run.data.tags}

    def parent_runs(self) -> list[Run]:
        """Parent runs, newest first."""
        runs = self._search(f"tags.`{ROLE_TAG}` = '{ROLE_PARENT}'")
        return sorted(runs, key=lambda r: r.info.start_time or 0, reverse=True)

    def release_stale_runs(self, before: Any = None) -> list[str]:
        """Mark runs left RUNNING by a dead driver as KILLED (their trials are then resumed); `before()` runs
        once no live driver holds the sweep, before anything is marked (the replay of dead drivers' journals).

        Raises SweepBusyError when a driver of this sweep is still alive on this host. Runs of a driver on
        another host are taken as dead: one driver per sweep at a time is the rule."""
        assert self.client is not None
        host = socket.gethostname()
        stale = [run for run in self.parent_runs() if run.info.status == "RUNNING"]
        for run in stale:
            tags = run.data.tags
            pid = int(tags.get("driver_pid", "0") or 0)
            if tags.get("driver_host") == host and pid and pid != os.getpid() and pid_alive(pid):
                raise SweepBusyError(
                    f"sweep `{self.sweep_name}` is being run by another driver (pid {pid} on {host}, MLflow run "
                    f"{run.info.run_id}); wait for it to finish or stop it (Ctrl-C) before running it again."
                )
        if before is not None:
            before()
        released = []
        for run in stale:
            self.client.set_terminated(run.info.run_id, "KILLED")
            released.append(run.info.run_id)
        for run in self._search(f"tags.`{ROLE_TAG}` = '{ROLE_TRIAL}' and attributes.status = 'RUNNING'"):
            self.client.set_terminated(run.info.run_id, "KILLED")
            released.append(run.info.run_id)
        return released


# --- the store being away -------------------------------------------------------------------------------------
PERMANENT_ERRORS = {
    "INVALID_PARAMETER_VALUE",
    "RESOURCE_ALREADY_EXISTS",
    "RESOURCE_DOES_NOT_EXIST",
    "INVALID_STATE",
    "BAD_REQUEST",
    "PERMISSION_DENIED",
    "UNAUTHENTICATED",
}
"""MLflow error codes that say the write itself is wrong: retrying it later would fail the same way."""
RETRY_AFTER_S = 10.0
"""While the store is away, writes go to the journal only; sending is tried again this often (each try is one
2 s health check for a server, so the record catches up within seconds of the store's return)."""


def store_away(exc: BaseException) -> bool:
    """Whether `exc` says the store could not be reached or could not answer now (connection refused, timeout,
    5xx, a locked database), as opposed to a write it refuses."""
    import requests

    if isinstance(exc, MlflowException):
        return exc.error_code not in PERMANENT_ERRORS
    return isinstance(exc, OSError | requests.RequestException)


def answers(uri: str) -> bool:
    """A quick look (2 s) whether a tracking server answers, before writes that would each wait for the client's
    retries; a database URI is always tried directly."""
    if not uri.startswith(("http://", "https://")):
        return True
    import requests

    try:
        return requests.get(f"{uri.rstrip('/')}/health", timeout=2).ok
    except requests.RequestException:
        return False


def journal_directory(sweep: Sweep) -> Path:
    """Next to the sweep's Tune storage when that is a local folder; else in the local runs folder."""
    storage = storage_path(sweep)
    base = Path(storage) if "://" not in storage else RUNS_DIR / "journal"
    return base / sweep.name / "journal"


# --- applying journaled writes ---------------------------------------------------------------------------------
class Writer:
    """Applies journaled writes (sweeps.journal) to the sweep's experiment; applying one twice changes nothing."""

    def __init__(self, store: Store, known: dict[str, Run], complete: bool = False):
        assert store.client is not None
        self.store = store
        self.client = store.client
        self.run_ids = {key: run.info.run_id for key, run in known.items()}
        self.complete = complete
        """`known` holds every trial run of the experiment (a live driver's view): no search for others."""

    def run_id(self, key: str) -> str | None:
        """The trial's run, found by key in the store when this writer has not seen it yet."""
        if key not in self.run_ids and not self.complete:
            found = self.store._search(f"tags.`{KEY_TAG}` = '{key}'")
            if found:
                self.run_ids[key] = max(found, key=lambda r: r.info.start_time or 0).info.run_id
        return self.run_ids.get(key)

    def apply(self, ops: list[Op]) -> None:
        """Apply ops in order; each trial's consecutive metric points go out in a few batches."""
        points: dict[str, list[list[Any]]] = {}
        for op in ops:
            key = op.get("key")
            if op["op"] == "metrics":
                points.setdefault(key, []).extend(op["points"])
                continue
            if key in points:
                self.log_points(key, points.pop(key))
            getattr(self, f"_{op['op']}")(op)
        for key, pending in points.items():
            self.log_points(key, pending)

    def log_points(self, key: str, points: list[list[Any]]) -> None:
        """Metric points [name, value, timestamp, step] in increasing steps, in batches that end at a step
        boundary, each tagged with its last step (what a resumed trial need not log again)."""
        run_id = self.run_id(key)
        start = 0
        while start < len(points):
            end = min(start + MAX_METRICS_PER_BATCH, len(points))
            if end < len(points):
                while end > start + 1 and points[end][3] == points[end - 1][3]:
                    end -= 1
            batch = points[start:end]
            self.client.log_batch(
                run_id,
                metrics=_metrics(batch),
                tags=[RunTag(LAST_STEP_TAG, str(batch[-1][3]))],
            )
            start = end

    def _open(self, op: Op) -> None:
        run_id = self.run_id(op["key"])
        created = run_id is None
        if created:
            run_id = self.client.create_run(
                self.store.experiment_id, run_name=op["name"], tags=op["tags"], start_time=op["time"]
            ).info.run_id
            self.run_ids[op["key"]] = run_id
        run = None if created else self.client.get_run(run_id)
        have = {} if run is None else run.data.params
        if run is not None:  # found again: give it whatever identity it lacks (a driver died before tagging it)
            self._set_tags(run_id, {k: v for k, v in op["tags"].items() if k not in run.data.tags})
        missing = {k: v for k, v in op["params"].items() if k not in have}
        _log_params(self.client, run_id, missing)
        if created or missing:
            for path, text in op["texts"].items():
                self.client.log_text(run_id, text, path)

    def _resume(self, op: Op) -> None:
        run_id = self.run_id(op["key"])
        self.client.update_run(run_id, status="RUNNING")
        self._set_tags(run_id, op["tags"])

    def _tags(self, op: Op) -> None:
        self._set_tags(self.run_id(op["key"]), op["tags"])

    def _finish(self, op: Op) -> None:
        run_id = self.run_id(op["key"])
        if self.client.get_run(run_id).info.status == "FINISHED":
            return
        self.client.log_batch(
            run_id,
            metrics=_metrics(op["points"]),
            tags=[RunTag(k, v) for k, v in op["tags"].items()],
        )
        for path, text in op["texts"].items():
            self.client.log_text(run_id, text, path)
        checkpoint = op.get("checkpoint")
        if checkpoint and Path(checkpoint).is_dir():
            self.client.log_artifacts(run_id, checkpoint, "checkpoint")
        self.client.set_terminated(run_id, "FINISHED", end_time=op["time"])

    def _fail(self, op: Op) -> None:
        run_id = self.run_id(op["key"])
        if self.client.get_run(run_id).info.status == "FINISHED":
            return
        self._set_tags(run_id, op["tags"])
        self.client.set_terminated(run_id, "FAILED", end_time=op["time"])

    def _end(self, op: Op) -> None:
        run_id = self.run_id(op["key"])
        if run_id is not None and self.client.get_run(run_id).info.status == "RUNNING":
            self.client.set_terminated(run_id, op["status"], end_time=op["time"])

    def _parent_tag(self, op: Op) -> None:
        self.client.set_tag(op["run_id"], op["tag"], op["value"])

    def _set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        if tags:
            self.client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])


def replay_leftovers(store: Store, sweep: Sweep, say: Any) -> int:
    """Send what earlier drivers of this sweep journaled and could not send, then remove their journals; returns
    the number of writes replayed. Raises the store's error when it is away (nothing is removed then)."""
    replayed = 0
    for path in leftovers(journal_directory(sweep)):
        ops = read(path)
        Writer(store, {}).apply(ops)
        points = sum(len(op["points"]) for op in ops if op["op"] in ("metrics", "finish"))
        say(f"[{sweep.name}] sent {len(ops)} writes ({points} metric points) journaled by an earlier driver ({path})")
        path.unlink()
        replayed += len(ops)
    return replayed


# --- the live recorder -----------------------------------------------------------------------------------------
@dataclass
class OpenTrial:
    """A child run being written by this driver."""

    run_id: str | None
    """None while the store has been away since the trial started."""
    trial: Trial
    last_logged_step: int = -1
    """Steps at or below this are journaled already (a resumed trial replays them from its checkpoint)."""
    last_names: set[str] = field(default_factory=set)
    """The metric names journaled at last_logged_step."""
    result: dict[str, Any] | None = None
    worker: dict[str, str] | None = None
    """Where the trial trains now: the `host`, `worker_pid`, `node_ip` and `ray_node_id` tags."""
    retries: int = 0


class SweepRecorder:
    """Writes the parent run and every child run of one invocation. Every trial write is journaled (durably)
    first, then sent: metric points in batches, everything else at once. While the store is away the sweep goes
    on and only the journal grows; the writes go out when the store answers again, or at the next run."""

    def __init__(
        self,
        store: Store,
        sweep: Sweep,
        existing: dict[str, Run],
        commit: str | None = None,
        say: Any = None,
    ):
        assert store.client is not None and store.experiment_id is not None
        self.store = store
        self.client = store.client
        self.sweep = sweep
        self.existing = dict(existing)
        self.writer = Writer(store, existing, complete=True)
        self.journal = Journal(journal_directory(sweep))
        self.open: dict[str, OpenTrial] = {}
        self.queue: list[Op] = []
        """Journaled writes not yet in the store, in order."""
        self.queued_points = 0
        self.parent_run_id: str | None = None
        self.commit = commit or git_commit()
        self.host = socket.gethostname()
        self.last_flush = time.monotonic()
        self.away_since: float | None = None
        self.retry_at = 0.0
        self.say = say or (lambda message: None)
        self.outcomes: dict[str, bool] = {}
        """trial key -> success of each trial this recorder finished (what an adaptive pool looks at)."""

    # --- parent run ---------------------------------------------------------------------------------------
    def start_parent(self, command: str, pending: int, tune_path: str) -> str:
        config = self.sweep.config
        run = self.client.create_run(
            self.store.experiment_id,
            run_name=f"{config.name}-{time.strftime('%Y%m%d-%H%M%S')}",
            tags={
                ROLE_TAG: ROLE_PARENT,
                SWEEP_TAG: config.name,
                "git_commit": self.commit,
                "host": self.host,
                "driver_host": self.host,
                "driver_pid": str(os.getpid()),
                "command": command,
                "config_path": str(self.sweep.path),
                TRAINER_TAG: config.trainer,
                "tune_experiment": tune_path,
                NOTE_TAG: f"Running: {pending} of {len(self.sweep.trials)} trials to go. The summary "
                "table appears here when this invocation ends.",
                **({OVERRIDES_TAG: shlex.join(self.sweep.overrides)} if self.sweep.overrides else {}),
            },
        )
        self.parent_run_id = run.info.run_id
        params = {
            "trainer": config.trainer,
            "trials": len(self.sweep.trials),
            "pending_at_start": pending,
            "science_axes": ",".join(self.sweep.science_axes) or "-",
            **{f"resources.{k}": v for k, v in config.resources.model_dump().items()},
            **{f"budget.{k}": v for k, v in config.budget.model_dump().items()},
            **{f"success.{k}": v for k, v in config.success.model_dump().items()},
            "stopping.patience_steps": config.stopping.patience_steps if config.stopping else 0,
            "max_failures": config.max_failures,
        }
        _log_params(self.client, self.parent_run_id, {k: _param_value(v) for k, v in params.items()})
        self.client.log_text(self.parent_run_id, self.sweep.text, f"sweep/{self.sweep.path.name}")
        if self.sweep.overrides:  # what the trials really ran with: the file with the overrides set
            effective = f"# {self.sweep.path.name} with {shlex.join(self.sweep.overrides)}\n"
            effective += yaml.safe_dump(self.sweep.values, sort_keys=False)
            self.client.log_text(self.parent_run_id, effective, "sweep/effective.yaml")
        return self.parent_run_id

    def set_parent_tag(self, key: str, value: str) -> None:
        if self.parent_run_id:
            self._record([{"op": "parent_tag", "run_id": self.parent_run_id, "tag": key, "value": value}], now=True)

    def finish_parent(self, status: str, trials_table: Any, summary: Any, summary_text: str) -> None:
        """Attach the summary (csv + text) and its numbers, then end the parent run with `status`."""
        run_id = self.parent_run_id
        if run_id is None:
            return
        self.client.log_text(run_id, summary_text + "\n", "summary/summary.txt")
        self.client.log_text(run_id, summary.to_csv(index=False), "summary/summary.csv")
        self.client.log_text(run_id, trials_table.to_csv(index=False), "summary/trials.csv")
        self.client.set_tag(run_id, NOTE_TAG, self.description(status, summary))
        finished = int(summary["finished"].sum())
        successes = int(summary["successes"].sum())
        values = {
            "pool/trials": float(summary["trials"].sum()),
            "pool/finished": finished,
            "pool/successes": successes,
            "pool/success_rate": successes / finished if finished else math.nan,
        }
        for row in summary.to_dict("records"):
            cell = "_".join(f"{c}-{row[c]}" for c in self.sweep.science_axes) or "all"
            cell = "".join(ch if ch.isalnum() or ch in "_-." else "_" for ch in cell)
            for column in ("success_rate", "ci_low", "ci_high", "median_steps_to_success", "successes", "finished"):
                values[f"cell/{cell}/{column}"] = float(row[column])
        now = _now_ms()
        metrics = [Metric(k, float(v), now, 0) for k, v in values.items() if not math.isnan(float(v))]
        for i in range(0, len(metrics), MAX_METRICS_PER_BATCH):
            self.client.log_batch(run_id, metrics=metrics[i : i + MAX_METRICS_PER_BATCH])
        self.client.set_terminated(run_id, status)
        self.parent_run_id = None

    def description(self, status: str, summary: Any) -> str:
        """The parent run's description in MLflow's UI (markdown): the pool's summary table, as the driver prints
        it at the end, with what was run."""
        sweep = self.sweep
        lines = [
            f"**{sweep.name}**: {status.lower()}; {len(sweep.trials)} trials, trainer {sweep.trainer.name}. "
            f"Success: {sweep.trainer.describe_success(sweep.config)}.",
            "",
            format_markdown(summary, sweep.science_axes, sweep.trainer.step_unit),
            "",
            "Rate: successes over finished seeds, with a Wilson interval. Per-trial rows: `summary/trials.csv`.",
        ]
        if sweep.overrides:
            lines.insert(1, f"Overrides: `{shlex.join(sweep.overrides)}` (the file as run: `sweep/effective.yaml`).")
        return "\n".join(lines)

    # --- child runs ---------------------------------------------------------------------------------------
    def open_trial(self, trial: Trial) -> str | None:
        """The trial's child run, created once with its identity and params and found by key afterwards (a
        resumed trial reuses it and gets any params it lacks). None while the store is away."""
        if trial.key in self.open:
            return self.open[trial.key].run_id
        known = self.existing.get(trial.key)
        ops = [self._open_op(trial)]
        if known is not None:
            last_step = int(known.data.tags.get(LAST_STEP_TAG, -1))
            ops.append({"op": "resume", "key": trial.key, "tags": {"resumed_by": self.parent_run_id or ""}})
            self.open[trial.key] = OpenTrial(known.info.run_id, trial, last_logged_step=last_step)
        else:
            self.open[trial.key] = OpenTrial(None, trial)
        self._record(ops, now=True)
        return self.open[trial.key].run_id

    def _open_op(self, trial: Trial) -> Op:
        config = trial.run_config
        axes = [f for name in [*self.sweep.science_axes, *self.sweep.config.axes.nuisance] for f in name.split("+")]
        axes = list(dict.fromkeys(f for f in axes if f in config))
        tags = {
            ROLE_TAG: ROLE_TRIAL,
            SWEEP_TAG: self.sweep.name,
            KEY_TAG: trial.key,
            "cell": trial.cell_label,
            "git_commit": self.commit,
            "host": self.host,
            TRAINER_TAG: self.sweep.trainer.name,
            AXES_TAG: ",".join(axes),
        }
        # The run's identity travels in its tags from the moment it exists: the loader places a run in its cell
        # even when the driver died before its params were logged.
        tags.update({name: _param_value(config[name]) for name in (*self.sweep.trainer.tag_fields, *axes)})
        if self.parent_run_id:
            tags[PARENT_TAG] = self.parent_run_id
        resources = self.sweep.config.resources
        params = {**config, "resources.cpu": resources.cpu, "resources.gpu": resources.gpu}
        return {
            "op": "open",
            "key": trial.key,
            "name": trial.name,
            "time": _now_ms(),
            "tags": tags,
            "params": {k: _param_value(v) for k, v in params.items()},
            "texts": {"config/run_config.yaml": yaml.safe_dump(config, sort_keys=False)},
        }

    def add_metrics(self, key: str, metrics: dict[str, Any]) -> None:
        """Journal one report's numeric metrics at its `step`; sent in batches."""
        entry = self.open.get(key)
        if entry is None or "step" not in metrics:
            return
        step = int(metrics["step"])
        if step <= entry.last_logged_step:
            return
        now = _now_ms()
        points = [
            [mlflow_key(name), float(value), now, step]
            for name, value in metrics.items()
            if is_trainer_metric(name) and not isinstance(value, bool) and isinstance(value, int | float)
        ]
        entry.last_logged_step = step
        entry.last_names = {name for name, *_ in points}
        if points:
            self._record([{"op": "metrics", "key": key, "points": points}])

    def note_worker(self, key: str, where: dict[str, str]) -> None:
        """Tag the node and process that train the trial (once per worker, not per report)."""
        entry = self.open.get(key)
        if entry is None or entry.worker == where:
            return
        entry.worker = where
        # Sent at once: the UI shows where a trial trains while it does (once per trial and worker, so cheap).
        self._record([{"op": "tags", "key": key, "tags": dict(where)}], now=True)

    def note_retry(self, key: str) -> None:
        """A crashed trial is being retried from its last checkpoint (Tune FailureConfig)."""
        entry = self.open.get(key)
        if entry is not None:
            entry.retries += 1
            self._record([{"op": "tags", "key": key, "tags": {"retries": str(entry.retries)}}], now=True)

    def finish_trial(self, key: str, result: dict[str, Any], checkpoint_dir: str | None = None) -> None:
        """Final metrics, stop reason, artifacts; then FINISHED."""
        entry = self.open.pop(key, None)
        if entry is None:
            return
        steps = int(result["steps"])
        self.outcomes[key] = bool(result["success"])
        final = {"success": float(bool(result["success"])), "steps": steps, "wall_time_s": result["wall_time_s"]}
        for optional in ("steps_to_success", "trial_time_s", "trial_cpu_s"):
            if result.get(optional) is not None:
                final[optional] = result[optional]
        if entry.last_logged_step == steps:  # the trainer's last report holds its verdict at this step already
            final = {k: v for k, v in final.items() if k not in entry.last_names}
        now = _now_ms()
        tags = {STOP_REASON_TAG: result["stop_reason"], STOPPED_STEP_TAG: str(steps)}
        if result.get("diverged_step") is not None:
            tags["diverged_step"] = str(result["diverged_step"])
        texts = {"result.json": json.dumps(result, indent=2, default=str)}
        for name, rows in result.items():  # eval_table (error per length), probe_table (carry chains, ...)
            if name.endswith("_table") and rows:
                texts[f"eval/{name}.csv"] = _csv(rows)
                texts[f"eval/{name}.json"] = json.dumps(rows, indent=2, default=str)
        log_checkpoint = checkpoint_dir if checkpoint_dir and self.sweep.config.tracking.log_checkpoints else None
        op = {
            "op": "finish",
            "key": key,
            "time": now,
            "points": [[k, float(v), now, steps] for k, v in final.items()],
            "tags": tags,
            "texts": texts,
            "checkpoint": log_checkpoint,
        }
        self._record([op], now=True)

    def fail_trial(self, key: str, error: str) -> None:
        if self.open.pop(key, None) is None:
            return
        tags = {STOP_REASON_TAG: ERROR, "error": error[:4000]}
        self._record([{"op": "fail", "key": key, "time": _now_ms(), "tags": tags}], now=True)

    def close_open(self, status: str = "KILLED") -> None:
        """End every child run still open (interrupt or crash of the driver): never leave one RUNNING."""
        ops = [{"op": "end", "key": key, "time": _now_ms(), "status": status} for key in self.open]
        self.open.clear()
        if ops:
            self._record(ops, now=True)

    # --- journal and sending ------------------------------------------------------------------------------
    def _record(self, ops: list[Op], now: bool = False) -> None:
        self.journal.append(ops)
        self.queue.extend(ops)
        self.queued_points += sum(len(op.get("points", ())) for op in ops)
        self.flush(force=now)

    def flush(self, force: bool = False) -> bool:
        """Send the queued writes when due (`force`: now); True when nothing is left to send. While the store is
        away, sending is tried again every RETRY_AFTER_S and the writes wait in the journal."""
        if not self.queue:
            return True
        clock = time.monotonic()
        if self.away_since is not None and clock < self.retry_at:
            return False
        due = self.queued_points >= FLUSH_EVERY_POINTS or clock - self.last_flush >= FLUSH_EVERY_S
        if not (force or due or self.away_since is not None):
            return False
        return self._send()

    def _send(self) -> bool:
        try:
            if not answers(self.store.uri):
                raise ConnectionError(f"{self.store.uri} does not answer")
            self.writer.apply(self.queue)
        except Exception as exc:
            if not store_away(exc):
                raise
            if self.away_since is None:
                self.away_since = time.monotonic()
                self.say(
                    f"[{self.sweep.name}] the MLflow store at {self.store.uri} is not answering "
                    f"({_short(exc)}); the sweep goes on and every write waits in {self.journal.path} until it "
                    "is back."
                )
            self.retry_at = time.monotonic() + RETRY_AFTER_S
            return False
        if self.away_since is not None:
            self.say(
                f"[{self.sweep.name}] the MLflow store is back after {time.monotonic() - self.away_since:.0f} s; "
                f"sent the {len(self.queue)} writes journaled meanwhile."
            )
            self.away_since = None
        for entry in self.open.values():
            entry.run_id = self.writer.run_ids.get(entry.trial.key, entry.run_id)
        self.queue, self.queued_points = [], 0
        self.last_flush = time.monotonic()
        return True

    def finish(self) -> bool:
        """Send everything still queued, whatever the retry clock says; when all of it is in the store, remove
        the journal. False when the store is away: the journal stays for the next run to replay."""
        sent = not self.queue or self._send()
        if sent:
            self.journal.discard()
        else:
            self.journal.close()
        return sent


def _log_params(client: MlflowClient, run_id: str, params: dict[str, str]) -> None:
    items = [Param(k, v) for k, v in params.items()]
    for i in range(0, len(items), MAX_PARAMS_PER_BATCH):
        client.log_batch(run_id, params=items[i : i + MAX_PARAMS_PER_BATCH])


def _metrics(points: list[list[Any]]) -> list[Metric]:
    """Journaled points [name, value, timestamp, step] as MLflow metrics."""
    return [Metric(name, float(value), ts, step) for name, value, ts, step in points]


def _param_value(value: Any) -> str:
    return json.dumps(value) if isinstance(value, list | tuple | dict) else str(value)


def _csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(dict.fromkeys(k for row in rows for k in row)))
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def _now_ms() -> int:
    return int(time.time() * 1000)


def _short(exc: BaseException) -> str:
    """The first line of an error, at most 200 characters."""
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return text if len(text) <= 200 else text[:197] + "..."
