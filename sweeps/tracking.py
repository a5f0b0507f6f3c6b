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
import math
import os
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, Run, RunTag

from seedcore.record import (
    ERROR,
    KEY_TAG,
    LAST_STEP_TAG,
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
    default_tracking_uri,
    is_trainer_metric,
    mlflow_key,
)
from sweeps.expand import Sweep, Trial

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
    """Ray Tune storage root for this sweep's trials and checkpoints."""
    storage = sweep.config.tracking.storage
    if storage and "://" in storage:
        return storage
    return _absolute(storage) if storage else str(RUNS_DIR)


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
        elif create:
            # A local store keeps artifacts next to the database; MLflow's default is ./mlruns in whatever
            # directory the process happens to run in.
            location = (db.parent / "mlartifacts" / sweep_name).as_uri() if db is not None else None
            self.experiment_id = self.client.create_experiment(
                sweep_name, artifact_location=location, tags={ROLE_TAG: ROLE_SWEEP}
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

    def release_stale_runs(self) -> list[str]:
        """Mark runs left RUNNING by a dead driver as KILLED (their trials are then resumed).

        Raises SweepBusyError when a driver of this sweep is still alive on this host. Runs of a driver on
        another host are taken as dead: one driver per sweep at a time is the rule."""
        assert self.client is not None
        host = socket.gethostname()
        released = []
        for run in self.parent_runs():
            if run.info.status != "RUNNING":
                continue
            tags = run.data.tags
            pid = int(tags.get("driver_pid", "0") or 0)
            if tags.get("driver_host") == host and pid and pid != os.getpid() and pid_alive(pid):
                raise SweepBusyError(
                    f"sweep `{self.sweep_name}` is being run by another driver (pid {pid} on {host}, MLflow run "
                    f"{run.info.run_id}); wait for it to finish or stop it (Ctrl-C) before running it again."
                )
            self.client.set_terminated(run.info.run_id, "KILLED")
            released.append(run.info.run_id)
        for run in self._search(f"tags.`{ROLE_TAG}` = '{ROLE_TRIAL}' and attributes.status = 'RUNNING'"):
            self.client.set_terminated(run.info.run_id, "KILLED")
            released.append(run.info.run_id)
        return released


@dataclass
class OpenTrial:
    """A child run being written: its buffered metric points and what the trial reported last."""

    run_id: str
    trial: Trial
    last_logged_step: int = -1
    """Steps at or below this are already in MLflow (a resumed trial replays them from its checkpoint)."""
    buffer: list[Metric] = field(default_factory=list)
    result: dict[str, Any] | None = None
    worker: tuple[str, int] | None = None
    """(host, pid) of the Ray worker training the trial now."""
    retries: int = 0


class SweepRecorder:
    """Writes the parent run and every child run of one invocation, batching metric points."""

    def __init__(self, store: Store, sweep: Sweep, existing: dict[str, Run], commit: str | None = None):
        assert store.client is not None and store.experiment_id is not None
        self.client = store.client
        self.experiment_id = store.experiment_id
        self.sweep = sweep
        self.existing = dict(existing)
        self.open: dict[str, OpenTrial] = {}
        self.parent_run_id: str | None = None
        self.commit = commit or git_commit()
        self.host = socket.gethostname()
        self.last_flush = time.monotonic()

    # --- parent run ---------------------------------------------------------------------------------------
    def start_parent(self, command: str, pending: int, tune_path: str) -> str:
        config = self.sweep.config
        run = self.client.create_run(
            self.experiment_id,
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
        self._log_params(self.parent_run_id, params)
        self.client.log_text(self.parent_run_id, self.sweep.text, f"sweep/{self.sweep.path.name}")
        return self.parent_run_id

    def set_parent_tag(self, key: str, value: str) -> None:
        if self.parent_run_id:
            self.client.set_tag(self.parent_run_id, key, value)

    def finish_parent(self, status: str, trials_table: Any, summary: Any, summary_text: str) -> None:
        """Attach the summary (csv + text) and its numbers, then end the parent run with `status`."""
        run_id = self.parent_run_id
        if run_id is None:
            return
        self.client.log_text(run_id, summary_text + "\n", "summary/summary.txt")
        self.client.log_text(run_id, summary.to_csv(index=False), "summary/summary.csv")
        self.client.log_text(run_id, trials_table.to_csv(index=False), "summary/trials.csv")
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

    # --- child runs ---------------------------------------------------------------------------------------
    def open_trial(self, trial: Trial) -> str:
        """The trial's child run, created once and found by key afterwards (a resumed trial reuses it)."""
        if trial.key in self.open:
            return self.open[trial.key].run_id
        known = self.existing.get(trial.key)
        if known is not None:
            run_id = known.info.run_id
            last_step = int(known.data.tags.get(LAST_STEP_TAG, -1))
            self.client.update_run(run_id, status="RUNNING")
            if self.parent_run_id:
                self.client.set_tag(run_id, "resumed_by", self.parent_run_id)
            self.open[trial.key] = OpenTrial(run_id, trial, last_logged_step=last_step)
            return run_id
        config = trial.run_config
        tags = {
            ROLE_TAG: ROLE_TRIAL,
            SWEEP_TAG: self.sweep.name,
            KEY_TAG: trial.key,
            "cell": trial.cell_label,
            "git_commit": self.commit,
            "host": self.host,
            TRAINER_TAG: self.sweep.trainer.name,
        }
        tags.update({name: str(config[name]) for name in self.sweep.trainer.tag_fields if name in config})
        if self.parent_run_id:
            tags[PARENT_TAG] = self.parent_run_id
        run = self.client.create_run(self.experiment_id, run_name=trial.name, tags=tags)
        run_id = run.info.run_id
        resources = self.sweep.config.resources
        self._log_params(run_id, {**config, "resources.cpu": resources.cpu, "resources.gpu": resources.gpu})
        self.client.log_text(run_id, yaml.safe_dump(config, sort_keys=False), "config/run_config.yaml")
        self.existing[trial.key] = run
        self.open[trial.key] = OpenTrial(run_id, trial)
        return run_id

    def add_metrics(self, key: str, metrics: dict[str, Any]) -> None:
        """Buffer one report's numeric metrics at its `step`; flushed in batches."""
        entry = self.open.get(key)
        if entry is None or "step" not in metrics:
            return
        step = int(metrics["step"])
        if step <= entry.last_logged_step:
            return
        now = _now_ms()
        for name, value in metrics.items():
            if not is_trainer_metric(name) or isinstance(value, bool) or not isinstance(value, int | float):
                continue
            entry.buffer.append(Metric(mlflow_key(name), float(value), now, step))
        entry.last_logged_step = step
        self.flush()

    def note_worker(self, key: str, host: str, pid: int) -> None:
        """Tag the host and process that train the trial (once per worker, not per report)."""
        entry = self.open.get(key)
        if entry is None or entry.worker == (host, pid):
            return
        entry.worker = (host, pid)
        self.client.log_batch(entry.run_id, tags=[RunTag("host", host), RunTag("worker_pid", str(pid))])

    def note_retry(self, key: str) -> None:
        """A crashed trial is being retried from its last checkpoint (Tune FailureConfig)."""
        entry = self.open.get(key)
        if entry is not None:
            entry.retries += 1
            self._flush_entry(entry)
            self.client.set_tag(entry.run_id, "retries", str(entry.retries))

    def flush(self, force: bool = False) -> None:
        pending = sum(len(e.buffer) for e in self.open.values())
        if not pending or (
            not force and pending < FLUSH_EVERY_POINTS and time.monotonic() - self.last_flush < FLUSH_EVERY_S
        ):
            return
        for entry in self.open.values():
            self._flush_entry(entry)
        self.last_flush = time.monotonic()

    def _flush_entry(self, entry: OpenTrial) -> None:
        if not entry.buffer:
            return
        for i in range(0, len(entry.buffer), MAX_METRICS_PER_BATCH):
            last = i + MAX_METRICS_PER_BATCH >= len(entry.buffer)
            tags = [RunTag(LAST_STEP_TAG, str(entry.last_logged_step))] if last else []
            self.client.log_batch(entry.run_id, metrics=entry.buffer[i : i + MAX_METRICS_PER_BATCH], tags=tags)
        entry.buffer = []

    def finish_trial(self, key: str, result: dict[str, Any], checkpoint_dir: str | None = None) -> None:
        """Final metrics, stop reason, artifacts; then FINISHED."""
        entry = self.open.pop(key, None)
        if entry is None:
            return
        self._flush_entry(entry)
        run_id, steps = entry.run_id, int(result["steps"])
        final = {"success": float(bool(result["success"])), "steps": steps, "wall_time_s": result["wall_time_s"]}
        for optional in ("steps_to_success", "trial_time_s", "trial_cpu_s"):
            if result.get(optional) is not None:
                final[optional] = result[optional]
        now = _now_ms()
        tags = {STOP_REASON_TAG: result["stop_reason"], STOPPED_STEP_TAG: str(steps)}
        if result.get("diverged_step") is not None:
            tags["diverged_step"] = str(result["diverged_step"])
        self.client.log_batch(
            run_id,
            metrics=[Metric(k, float(v), now, steps) for k, v in final.items()],
            tags=[RunTag(k, v) for k, v in tags.items()],
        )
        self.client.log_text(run_id, json.dumps(result, indent=2, default=str), "result.json")
        for name, rows in result.items():  # eval_table (error per length), probe_table (carry chains, ...)
            if name.endswith("_table") and rows:
                self.client.log_text(run_id, _csv(rows), f"eval/{name}.csv")
                self.client.log_text(run_id, json.dumps(rows, indent=2, default=str), f"eval/{name}.json")
        if checkpoint_dir and self.sweep.config.tracking.log_checkpoints:
            self.client.log_artifacts(run_id, checkpoint_dir, "checkpoint")
        self.client.set_terminated(run_id, "FINISHED")

    def fail_trial(self, key: str, error: str) -> None:
        entry = self.open.pop(key, None)
        if entry is None:
            return
        self._flush_entry(entry)
        self.client.log_batch(entry.run_id, tags=[RunTag(STOP_REASON_TAG, ERROR), RunTag("error", error[:4000])])
        self.client.set_terminated(entry.run_id, "FAILED")

    def close_open(self, status: str = "KILLED") -> None:
        """End every child run still open (interrupt or crash of the driver): never leave one RUNNING."""
        for key in list(self.open):
            entry = self.open.pop(key)
            try:
                self._flush_entry(entry)
            finally:
                self.client.set_terminated(entry.run_id, status)

    def _log_params(self, run_id: str, params: dict[str, Any]) -> None:
        items = [Param(k, _param_value(v)) for k, v in params.items()]
        for i in range(0, len(items), MAX_PARAMS_PER_BATCH):
            self.client.log_batch(run_id, params=items[i : i + MAX_PARAMS_PER_BATCH])


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
