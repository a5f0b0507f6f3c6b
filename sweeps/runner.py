"""`run`, `status` and the dry run: turn a validated Sweep into Ray Tune trials recorded in MLflow.

Resume and growth, in one rule: a trial is done when MLflow holds a FINISHED child run with its key. Each
invocation runs the pool's other trials. If the previous invocation's Tune experiment holds some of them
unfinished (it was interrupted), `Tuner.restore` continues those from their checkpoints first; whatever is
still not done (new seeds, new widths, trials the old experiment never started) runs in a fresh Tune
experiment. Tune cannot change a restored experiment's search space, hence the two phases.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import pandas as pd

from seedcore.record import REPO_ROOT, default_tracking_uri
from sweeps.expand import Sweep, Trial
from sweeps.summary import format_table, summarize

MANIFEST = "seedpool_trials.json"
"""Written into each Tune experiment folder: the trial keys it was launched with."""

EXIT_OK, EXIT_TRIALS_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


# --- dry run -----------------------------------------------------------------------------------------------
def describe_plan(sweep: Sweep) -> str:
    """The expanded trial table and what it asks of the cluster; needs neither Ray nor MLflow."""
    from sweeps.tracking import storage_path, tracking_uri

    config, trials = sweep.config, sweep.trials
    axes = config.axes
    cells = len({tuple(t.cell.items()) for t in trials})
    res = config.resources
    run = trials[0].run_config
    unit = sweep.trainer.step_unit
    budget = " and ".join(
        filter(
            None,
            [
                f"{config.budget.steps} {unit}" if config.budget.steps else "",
                f"{config.budget.minutes:g} minutes" if config.budget.minutes else "",
            ],
        )
    )
    lines = [
        f"sweep `{config.name}` ({sweep.path}): trainer {config.trainer}, {len(trials)} trials = "
        f"{cells} cell{'s' if cells != 1 else ''} x {len(trials) // max(cells, 1)} nuisance settings",
        "science axes:  " + ("; ".join(f"{k} {v}" for k, v in axes.science.items()) or "(none)"),
        "nuisance axes: " + "; ".join(f"{k} {_compact(v)}" for k, v in axes.nuisance.items()),
        f"per trial:     {res.cpu:g} CPU, {res.gpu:g} GPU (threads {run.get('threads', '-')}, "
        f"device {run.get('device', '-')}); budget {budget}; up to {config.max_failures} retries",
        f"success:       {sweep.trainer.describe_success(config)}"
        + (f"; hopeless after {config.stopping.patience_steps} {unit} without progress" if config.stopping else ""),
        f"pool needs:    {len(trials) * res.cpu:g} CPU-trials"
        + (
            f", {len(trials) * res.gpu:g} GPU-trials; one GPU holds {int(1 // res.gpu) if res.gpu < 1 else 1} "
            "trial(s) at once"
            if res.gpu
            else f"; {os.cpu_count()} local CPUs run {int((os.cpu_count() or 1) // res.cpu)} at once"
        ),
        f"recording:     {tracking_uri(sweep)}; storage {storage_path(sweep)}/{config.name}",
        "",
    ]
    columns = ["#", "key", *sweep.science_axes, *axes.nuisance]
    rows = [[str(t.index), t.key, *(str(t.axis_values[c]) for c in columns[2:])] for t in trials]
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
    lines.append("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


def _compact(values: list[Any]) -> str:
    if (
        len(values) > 3
        and all(isinstance(v, int) for v in values)
        and values == list(range(values[0], values[0] + len(values)))
    ):
        return f"{values[0]}..{values[-1]} ({len(values)} values)"
    return str(values)


# --- Ray -----------------------------------------------------------------------------------------------------
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


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM stops a sweep like Ctrl-C (Tune's graceful stop), so runs end KILLED rather than RUNNING.
    Also puts back the SIGINT handler, which Tune replaces during `fit` and leaves installed after it."""
    previous = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    try:
        signal.signal(signal.SIGTERM, lambda signum, frame: signal.raise_signal(signal.SIGINT))
    except ValueError:  # not the main thread: signals are not ours to handle
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous[0])
        signal.signal(signal.SIGINT, previous[1])


# --- the pool as recorded ----------------------------------------------------------------------------------
def pool_table(sweep: Sweep, runs: dict[str, Any]) -> pd.DataFrame:
    """One row per trial of the pool with its recorded outcome (PENDING when never recorded)."""
    rows = []
    for trial in sweep.trials:
        run = runs.get(trial.key)
        metrics = run.data.metrics if run else {}
        tags = run.data.tags if run else {}
        status = run.info.status if run else "PENDING"
        rows.append(
            {
                **trial.cell,
                **{k: v for k, v in trial.axis_values.items() if k not in trial.cell},
                "trial_key": trial.key,
                "status": status,
                "success": metrics.get("success") if status == "FINISHED" else None,
                "steps_to_success": metrics.get("steps_to_success"),
                "steps": metrics.get("steps"),
                "wall_time_s": metrics.get("wall_time_s"),
                "trial_time_s": metrics.get("trial_time_s"),
                "trial_cpu_s": metrics.get("trial_cpu_s"),
                "stop_reason": tags.get("stop_reason"),
                "run_id": run.info.run_id if run else None,
            }
        )
    frame = pd.DataFrame(rows)
    for column in ("success", "steps_to_success", "steps", "wall_time_s", "trial_time_s", "trial_cpu_s"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame


def summary_of(sweep: Sweep, runs: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    table = pool_table(sweep, runs)
    summary = summarize(table, sweep.science_axes)
    return table, summary, format_table(summary, sweep.science_axes, sweep.trainer.step_unit)


def report_hint(sweep: Sweep, uri: str) -> str:
    """One line: the `make report` command that analyses this sweep's record (Makefile target `report`, which
    reads $MLFLOW_TRACKING_URI, else the default store). The URI is spelled out when make would not find it."""
    command, reports = ["make"], Path("reports")
    if Path.cwd().resolve() != REPO_ROOT:
        command, reports = ["make", "-C", str(REPO_ROOT)], REPO_ROOT / "reports"
    command += ["report", f"EXPERIMENT={sweep.name}"]
    if uri != default_tracking_uri():
        command.append(f"MLFLOW_TRACKING_URI={uri}")  # a command-line variable wins over the environment in make
    return f"[{sweep.name}] analysis report: {shlex.join(command)}  (writes {reports / sweep.name / 'index.html'})"


# --- run -----------------------------------------------------------------------------------------------------
@dataclass
class Plan:
    """What one `run` invocation does, decided from the record before anything starts."""

    sweep: Sweep
    store: Any
    runs: dict[str, Any]
    """trial key -> its MLflow run, for every trial recorded so far."""
    todo: list[Trial]
    """Trials without a FINISHED run, in expansion order."""
    finished: set[str]
    successes_before: int
    previous: str | None
    """The last invocation's Tune experiment (None with --restart)."""
    max_concurrent: int | None
    parallel: int
    """Trials the cluster runs at once (for the ETA and the overhead figure)."""
    storage: str


def run_sweep(
    sweep: Sweep,
    max_concurrent: int | None = None,
    restart: bool = False,
    stream: TextIO | None = None,
    argv: list[str] | None = None,
) -> int:
    """Launch the pool's unfinished trials and record them; returns the exit status."""
    stream = stream or sys.stdout
    import ray
    from mlflow.exceptions import MlflowException

    from sweeps.resources import check_feasible, max_parallel, node_resources
    from sweeps.schema import SweepConfigError
    from sweeps.tracking import Store, SweepBusyError, storage_path, tracking_uri

    def say(message: str) -> None:
        print(message, file=stream, flush=True)

    started_ray = False
    try:
        try:
            started_ray = connect_ray()
            nodes = node_resources(ray.nodes())
            check_feasible(sweep.config.resources, nodes, str(sweep.path))
        except ConnectionError as exc:
            raise SweepConfigError(f"cannot reach the Ray cluster at RAY_ADDRESS: {exc}") from None

        uri = tracking_uri(sweep)
        try:
            store = Store(uri, sweep.name)
            store.release_stale_runs()
        except SweepBusyError as exc:
            raise SweepConfigError(str(exc)) from None
        except MlflowException as exc:
            raise SweepConfigError(f"cannot open the MLflow store {uri}: {exc.message}") from None
        pool_keys = {t.key for t in sweep.trials}
        runs = store.trial_runs()
        stale = sorted(k for k in runs if k not in pool_keys)
        if restart:
            retired = list(runs.values())  # this pool's runs and those of earlier versions of its config
            for run in retired:
                store.client.delete_run(run.info.run_id)
            if retired:
                say(
                    f"--restart: {len(retired)} earlier trial runs of this pool moved to MLflow's deleted runs "
                    "(kept until `mlflow gc`); every trial runs again from step 0."
                )
            runs = {}
        elif stale:
            say(
                f"note: {len(stale)} trial runs in experiment `{sweep.name}` match no trial of this config (an "
                "earlier version of it?); they stay, and the analysis pools them with this config's runs by their "
                "axis values. `--restart` retires them with the rest."
            )
        finished = {k for k, r in runs.items() if r.info.status == "FINISHED" and k in pool_keys}
        todo = [t for t in sweep.trials if t.key not in finished]
        successes_before = sum(runs[k].data.metrics.get("success", 0) == 1 for k in finished)
        say(
            f"[{sweep.name}] pool of {len(sweep.trials)} trials: {len(finished)} finished earlier, "
            f"{len(todo)} to run; recording to {uri}"
        )
        if not todo:
            _, _, text = summary_of(sweep, runs)
            say(text)
            say(report_hint(sweep, uri))
            return EXIT_OK
        parallel = max_parallel(sweep.config.resources, nodes)
        plan = Plan(
            sweep=sweep,
            store=store,
            runs=runs,
            todo=todo,
            finished=finished,
            successes_before=int(successes_before),
            previous=None if restart else latest_tune_experiment(store),
            max_concurrent=max_concurrent,
            parallel=min(parallel, max_concurrent) if max_concurrent else parallel,
            storage=storage_path(sweep),
        )
        return launch(plan, stream, argv)
    finally:
        if started_ray:
            ray.shutdown()


def latest_tune_experiment(store: Any) -> str | None:
    """The Tune experiment of the newest invocation that launched one (a candidate for Tuner.restore)."""
    return next(
        (r.data.tags["tune_experiment"] for r in store.parent_runs() if r.data.tags.get("tune_experiment")), None
    )


def launch(plan: Plan, stream: TextIO, argv: list[str] | None) -> int:
    """Run the plan's trials (restore phase, then fresh phase), record them, print and log the summary."""
    from sweeps.callback import SESSIONS, Progress, Session
    from sweeps.tracking import SweepRecorder

    def say(message: str) -> None:
        print(message, file=stream, flush=True)

    quiet_tune()
    sweep, todo, finished, previous = plan.sweep, plan.todo, plan.finished, plan.previous
    recorder = SweepRecorder(plan.store, sweep, plan.runs)
    command = shlex.join(["python", "-m", "sweeps", *(argv or ["run", str(sweep.path)])])
    recorder.start_parent(command, len(todo), tune_path="")
    progress = Progress(sweep.name, len(sweep.trials), len(finished), plan.successes_before, len(todo), stream)
    session = Session(recorder, progress, {t.key: t for t in sweep.trials}, frozenset(finished))
    SESSIONS[sweep.name] = session
    sweep_started = time.monotonic()
    status, code = "KILLED", EXIT_INTERRUPTED
    try:
        with sigterm_as_interrupt():
            todo_keys = {t.key for t in todo}
            manifest = read_manifest(previous) if previous else set()
            # Restore only an experiment whose trials all still belong to the pool (same or grown pool).
            if manifest and manifest <= {t.key for t in sweep.trials} and manifest & todo_keys:
                restore(plan, previous, len(manifest & todo_keys), recorder, say)
            remaining = [t for t in todo if t.key not in session.completed | session.errored]
            if remaining and not session.interrupted:
                run_fresh(plan, remaining, recorder)
            if session.interrupted:
                status, code = "KILLED", EXIT_INTERRUPTED
            elif session.errored:
                status, code = "FAILED", EXIT_TRIALS_FAILED
            else:
                status, code = "FINISHED", EXIT_OK
    except KeyboardInterrupt:
        status, code = "KILLED", EXIT_INTERRUPTED
    finally:
        recorder.close_open("KILLED")
        SESSIONS.pop(sweep.name, None)
        table, summary, text = summary_of(sweep, plan.store.trial_runs())
        recorder.finish_parent(status, table, summary, text)
        wall = time.monotonic() - sweep_started
        say(f"\n[{sweep.name}] {status.lower()} after {wall:.0f} s; whole pool:\n{text}")
        say(_overhead_line(table, session.completed, wall, plan.parallel))
        say(report_hint(sweep, plan.store.uri))
        if status == "KILLED":
            say(f"[{sweep.name}] interrupted: run the same command again to resume.")
        elif status == "FAILED":
            say(
                f"[{sweep.name}] {len(session.errored)} trial(s) failed; their errors are in MLflow (tag "
                "`error`). Running the same command again retries them."
            )
    return code


def run_fresh(plan: Plan, trials: list[Trial], recorder: Any) -> None:
    """A new Tune experiment over `trials`, with a manifest of their keys for a later restore."""
    from ray import tune

    from sweeps.callback import RecordingCallback

    sweep = plan.sweep
    name = time.strftime("tune-%Y%m%d-%H%M%S")
    tuner = tune.Tuner(
        make_trainable(sweep, frozenset()),
        param_space={"trial": tune.grid_search([trial_spec(t, sweep.trainer.name) for t in trials])},
        tune_config=tune.TuneConfig(
            max_concurrent_trials=plan.max_concurrent,
            reuse_actors=True,  # one worker process per slot instead of one per trial (torch import: seconds)
            trial_name_creator=trial_name,
            trial_dirname_creator=trial_name,
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=f"{plan.storage}/{sweep.name}",
            verbose=0,
            failure_config=tune.FailureConfig(max_failures=sweep.config.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            callbacks=[RecordingCallback(sweep.name)],
        ),
    )
    path = f"{plan.storage}/{sweep.name}/{name}"
    write_manifest(path, [t.key for t in trials])
    recorder.set_parent_tag("tune_experiment", path)
    tuner.fit()


def restore(plan: Plan, path: str, unfinished: int, recorder: Any, say: Any) -> None:
    """Continue an interrupted Tune experiment: its unfinished trials resume from their last checkpoints."""
    from ray import tune

    if not tune.Tuner.can_restore(path):
        return
    say(f"[{plan.sweep.name}] resuming {unfinished} unfinished trials of {path}")
    recorder.set_parent_tag("tune_experiment", path)
    try:
        tuner = tune.Tuner.restore(
            path,
            trainable=make_trainable(plan.sweep, frozenset(plan.finished)),
            resume_unfinished=True,
            resume_errored=True,
        )
    except Exception as exc:  # a damaged experiment state must not block the pool: start those trials afresh
        say(f"[{plan.sweep.name}] cannot restore {path} ({exc}); its unfinished trials start again from step 0")
        return
    tuner.fit()


def _overhead_line(table: pd.DataFrame, keys: set[str], wall_s: float, parallel: int) -> str:
    ran = table[table["trial_key"].isin(keys)]
    own = float(ran["trial_time_s"].fillna(0).sum())
    if ran.empty or parallel < 1:
        return "orchestration: no trial finished in this invocation."
    slots = min(parallel, len(ran))
    ideal = own / slots
    line = (
        f"orchestration: sweep wall time {wall_s:.0f} s; {len(ran)} trials' own time {own:.0f} s over "
        f"{slots} parallel slots = {ideal:.0f} s; overhead {wall_s - ideal:.0f} s "
        f"({(wall_s / ideal - 1) * 100 if ideal else 0:.0f}%)"
    )
    cpu = float(ran["trial_cpu_s"].fillna(0).sum())
    if cpu and own:
        line += f"; the trials used {cpu:.0f} CPU-s, {cpu / own:.0%} of their own time (less: CPUs were shared)"
    return line


# --- status --------------------------------------------------------------------------------------------------
def sweep_status(sweep: Sweep, stream: TextIO | None = None) -> int:
    """Progress of a sweep from its record; never creates a store, never starts Ray."""
    stream = stream or sys.stdout
    from sweeps.tracking import Store, tracking_uri

    uri = tracking_uri(sweep)
    store = Store(uri, sweep.name, create=False)
    runs = store.trial_runs() if store.experiment_id else {}
    table, summary, text = summary_of(sweep, runs)
    counts = table["status"].value_counts().to_dict()
    order = ["FINISHED", "RUNNING", "KILLED", "FAILED", "PENDING"]
    described = ", ".join(f"{counts[s]} {s.lower()}" for s in order if counts.get(s))
    print(f"[{sweep.name}] {len(sweep.trials)} trials in the pool: {described} (recorded in {uri})", file=stream)
    parents = store.parent_runs() if store.experiment_id else []
    if parents:
        last = parents[0]
        print(
            f"last invocation: MLflow run {last.info.run_id}, {last.info.status.lower()}, "
            f"Tune experiment {last.data.tags.get('tune_experiment') or '-'}",
            file=stream,
        )
    print(text, file=stream)
    return EXIT_OK
