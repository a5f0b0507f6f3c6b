"""`run`, `status` and the dry run: turn a validated Sweep into trials recorded in MLflow.

`run` opens the record, plans from it (`sweeps.plan`: pure, the resume and growth rule is there), hands the plan's
restore and fresh phases to an executor (`sweeps.executor`; Ray Tune by default), then records and prints the
summary and returns the exit status.
"""

from __future__ import annotations

import dataclasses
import os
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

from seedcore.record import REPO_ROOT, RUNS_DIR, STOP_REASON_TAG, default_tracking_uri
from sweeps.executor import Executor
from sweeps.expand import Sweep
from sweeps.plan import Plan, RunRecord, plan_run

# Tune experiments launched before the executor had its own module pickled `sweeps.runner.trial_name` into their
# tuner.pkl: it stays importable here, or `Tuner.restore` of one interrupted then would fail and start it afresh.
from sweeps.ray_executor import trial_name  # noqa: F401
from sweeps.summary import format_table, summarize

EXIT_OK, EXIT_TRIALS_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130
EXIT_STORE_AWAY = 75
"""The pool ran but the tracking store stopped answering: its writes wait in the journal (sysexits' TEMPFAIL)."""


# --- dry run -----------------------------------------------------------------------------------------------
def describe_plan(sweep: Sweep) -> str:
    """The expanded trial table and what it asks of the cluster; needs neither Ray nor MLflow."""
    from sweeps.expand import form_packs
    from sweeps.resources import usable_cpus
    from sweeps.tracking import storage_path, tracking_uri

    config, trials = sweep.config, sweep.trials
    axes = config.axes
    cells = len({tuple(t.cell.items()) for t in trials})
    res = config.resources
    run = trials[0].run_config
    unit = sweep.trainer.step_unit
    processes = len(form_packs(trials, res.pack))  # what asks for resources: a trial, or a pack of them
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
        f"pool needs:    {processes * res.cpu:g} CPU-trials"
        + (
            f", {processes * res.gpu:g} GPU-trials; one GPU holds {int(1 // res.gpu) if res.gpu < 1 else 1} "
            "trial(s) at once"
            if res.gpu
            else f"; {usable_cpus()} local CPUs run {int(usable_cpus() // res.cpu)} at once"
        ),
        f"recording:     {tracking_uri(sweep)}; storage {storage_path(sweep)}/{config.name}",
        "",
    ]
    if sweep.overrides:
        lines.insert(1, f"overrides:     {shlex.join(sweep.overrides)}")
    if res.pack > 1:
        lines.insert(
            -2,
            f"packed:        up to {res.pack} seeds of a cell per trial process, as one grouped model: "
            f"{processes} processes, each asking for the resources above",
        )
    if config.adaptive is not None:
        from sweeps.adaptive import replay

        trials = replay(sweep, {}).pool
        adaptive = config.adaptive
        lines.insert(
            -1,
            f"adaptive:      the first look runs the {len(trials)} trials below ({adaptive.min_seeds} seeds a cell); "
            f"each look adds {adaptive.batch} seeds to every cell with an open question, at most the "
            f"{len(sweep.trials)} counted above; alpha {adaptive.alpha:g}"
            + (" for the whole pool" if adaptive.familywise else " per decision"),
        )
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
                "stop_reason": tags.get(STOP_REASON_TAG),
                "run_id": run.info.run_id if run else None,
            }
        )
    frame = pd.DataFrame(rows)
    for column in ("success", "steps_to_success", "steps", "wall_time_s", "trial_time_s", "trial_cpu_s"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame


def summary_of(sweep: Sweep, runs: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    table = pool_table(sweep, runs)
    if sweep.config.adaptive is None:
        summary = summarize(table, sweep.science_axes)
    else:  # looked at repeatedly: the table shows the looks' anytime-valid intervals, not fixed-size ones
        from sweeps.adaptive import summary_interval

        summary = summarize(table, sweep.science_axes, *summary_interval(sweep))
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


def ui_hint(sweep: Sweep, store: Any) -> str:
    """One line: where MLflow's UI shows the pool's runs (the parent run's description holds the summary)."""
    from sweeps.tracking import sqlite_file, ui_link

    link = ui_link(store.uri, store.experiment_id)
    if link is None:
        return f"[{sweep.name}] MLflow UI: open experiment `{sweep.name}` of {store.uri}"
    serve = ""
    if sqlite_file(store.uri):
        served = f"sqlite:///{RUNS_DIR / 'mlflow.db'}"  # the Makefile's MLFLOW_URI (it ignores $MLFLOW_TRACKING_URI)
        given = "" if store.uri == served else f" MLFLOW_URI={shlex.quote(store.uri)}"
        serve = f"  (after `make mlflow-ui{given}`)"
    return f"[{sweep.name}] MLflow UI: {link}{serve}"


# --- run -----------------------------------------------------------------------------------------------------
@dataclass
class Invocation:
    """What one `run` invocation works with once it has planned."""

    sweep: Sweep
    plan: Plan
    store: Any
    runs: dict[str, Any]
    """trial key -> its MLflow run, for every trial recorded so far that still counts (none after --restart)."""
    previous: str | None
    """The last invocation's Tune experiment (None with --restart)."""
    parallel: int
    """Trials the executor runs at once (for the overhead figure)."""


def run_sweep(
    sweep: Sweep,
    max_concurrent: int | None = None,
    restart: bool = False,
    stream: TextIO | None = None,
    argv: list[str] | None = None,
    executor: Executor | None = None,
) -> int:
    """Launch the pool's unfinished trials (on Ray Tune unless another executor is given) and record them;
    returns the exit status."""
    stream = stream or sys.stdout
    if executor is None:
        from sweeps.ray_executor import RayTuneExecutor

        executor = RayTuneExecutor(sweep, max_concurrent, stream)
    if sweep.config.adaptive is not None:  # seeds decided by looks at the record: sweeps/adaptive.py
        from sweeps.adaptive import run_adaptive

        return run_adaptive(sweep, executor, restart, stream, argv)

    def say(message: str) -> None:
        print(message, file=stream, flush=True)

    with connected(sweep, executor, say) as (parallel, store):
        runs = store.trial_runs()
        previous = None if restart else latest_tune_experiment(store)
        plan = plan_run(sweep.trials, run_records(runs), restart, executor.launched_keys(previous) if previous else ())
        for key in plan.retire:  # this pool's runs and those of earlier versions of its config
            store.client.delete_run(runs[key].info.run_id)
        if plan.retire:
            say(
                f"--restart: {len(plan.retire)} earlier trial runs of this pool moved to MLflow's deleted runs "
                "(kept until `mlflow gc`); every trial runs again from step 0."
            )
        if plan.stale:
            say(
                f"note: {len(plan.stale)} trial runs in experiment `{sweep.name}` match no trial of this config (an "
                "earlier version of it?); they stay, and the analysis pools them with this config's runs by their "
                "axis values. `--restart` retires them with the rest."
            )
        if restart:
            runs = {}
        say(
            f"[{sweep.name}] pool of {len(sweep.trials)} trials: {len(plan.finished)} finished earlier, "
            f"{len(plan.todo)} to run; recording to {store.uri}"
        )
        if not plan.todo:
            _, _, text = summary_of(sweep, runs)
            say(text)
            say(ui_hint(sweep, store))
            say(report_hint(sweep, store.uri))
            return EXIT_OK
        invocation = Invocation(sweep, plan, store, runs, previous, parallel)
        return launch(invocation, executor, stream, argv)


def command_line(sweep: Sweep, argv: list[str] | None) -> str:
    """The invocation as the parent run records it (`command` tag)."""
    return shlex.join(["python", "-m", "sweeps", *(argv or ["run", str(sweep.path)])])


def ending(session: Any) -> tuple[str, int]:
    """The parent run's status and the exit code once a `sweeps.session.Session`'s trials ran."""
    if session.interrupted:
        return "KILLED", EXIT_INTERRUPTED
    if session.errored:
        return "FAILED", EXIT_TRIALS_FAILED
    return "FINISHED", EXIT_OK


@contextmanager
def connected(sweep: Sweep, executor: Executor, say: Any) -> Iterator[tuple[int, Any]]:
    """The executor connected (Ray started or joined) and the sweep's store opened: (trials at once, store). A
    local store's schema is built while a local Ray starts (`tracking.local_store_warmed`); joining a running
    cluster takes a moment, so there is nothing to overlap, and a refusal (no node can hold a trial) must not
    wait for the schema."""
    from sweeps.resources import local_cluster_pending
    from sweeps.tracking import local_store_warmed, tracking_uri

    warming = local_store_warmed(tracking_uri(sweep), enabled=local_cluster_pending())
    with warming as warmed, executor.connect() as parallel:
        warmed()
        yield parallel, open_store(sweep, say)


def open_store(sweep: Sweep, say: Any = print) -> Any:
    """The sweep's MLflow experiment, with what earlier drivers journaled sent first and runs left RUNNING by a
    dead driver released."""
    from mlflow.exceptions import MlflowException

    from sweeps.journal import leftovers
    from sweeps.schema import SweepConfigError
    from sweeps.tracking import Store, SweepBusyError, journal_directory, replay_leftovers, store_away, tracking_uri

    # A store that stops answering is waited for by the journal, not by MLflow's retries (minutes per call).
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    uri = tracking_uri(sweep)
    try:
        store = Store(uri, sweep.name)
        store.release_stale_runs(before=lambda: replay_leftovers(store, sweep, say))
    except SweepBusyError as exc:
        raise SweepConfigError(str(exc)) from None
    except Exception as exc:
        if not (isinstance(exc, MlflowException) or store_away(exc)):
            raise
        message = exc.message if isinstance(exc, MlflowException) else str(exc)
        pending = journal_directory(sweep)
        waiting = leftovers(pending)
        raise SweepConfigError(
            f"cannot open the MLflow store {uri}: {message[:300]}. Start it (or point tracking.uri / "
            f"MLFLOW_TRACKING_URI at the right one) and run again"
            + (f"; writes of an earlier run wait in {pending} and are sent first" if waiting else "")
        ) from None
    return store


def run_records(runs: dict[str, Any]) -> dict[str, RunRecord]:
    """What planning needs of each recorded MLflow run."""
    return {k: RunRecord(r.info.status, r.data.metrics.get("success", 0) == 1) for k, r in runs.items()}


def latest_tune_experiment(store: Any) -> str | None:
    """The Tune experiment of the newest invocation that launched one (a candidate for Tuner.restore)."""
    return next(
        (r.data.tags["tune_experiment"] for r in store.parent_runs() if r.data.tags.get("tune_experiment")), None
    )


def success_test_metric(sweep: Sweep) -> str:
    """The report key of the success test's error (`eval/seq_error@201`); RL's rule is on reward, so its final
    test's sequence error stands in."""
    rule = sweep.config.success
    metric = rule.metric if rule.metric.endswith("_error") else "seq_error"
    return f"eval/{metric}@{rule.length}"


def pool_progress(sweep: Sweep, plan: Plan, stream: TextIO) -> Any:
    """The live progress line of a launch of `plan` over `sweep.trials` (sweeps.session.Progress)."""
    from sweeps.session import Progress, short_labels

    return Progress(
        sweep.name,
        len(sweep.trials),
        len(plan.finished),
        plan.successes_before,
        len(plan.todo),
        stream,
        labels=short_labels(sweep.trials),
        budget=sweep.config.budget.steps,
        test_metric=success_test_metric(sweep),
    )


def launch(invocation: Invocation, executor: Executor, stream: TextIO, argv: list[str] | None) -> int:
    """Run the plan's trials (restore phase, then fresh phase), record them, print and log the summary."""
    from sweeps.session import Session
    from sweeps.tracking import SweepRecorder

    def say(message: str) -> None:
        print(message, file=stream, flush=True)

    sweep, plan, store = invocation.sweep, invocation.plan, invocation.store
    recorder = SweepRecorder(store, sweep, invocation.runs, say=say)
    recorder.start_parent(command_line(sweep, argv), len(plan.todo), tune_path="")
    progress = pool_progress(sweep, plan, stream)
    session = Session(recorder, progress, {t.key: t for t in sweep.trials}, plan.finished)
    sweep_started = time.monotonic()
    status, code = "KILLED", EXIT_INTERRUPTED
    try:
        with sigterm_as_interrupt():
            if plan.restore and invocation.previous:
                executor.restore(invocation.previous, plan.restore, session)
            remaining = plan.fresh_after(session.completed | session.errored)
            if remaining and not session.interrupted:
                executor.fresh(remaining, session)
            status, code = ending(session)
    except KeyboardInterrupt:
        status, code = "KILLED", EXIT_INTERRUPTED
    finally:
        recorder.close_open("KILLED")
        wall = time.monotonic() - sweep_started
        code = conclude(invocation, recorder, session, status, code, wall, say)
    return code


def conclude(invocation: Invocation, recorder: Any, session: Any, status: str, code: int, wall: float, say: Any) -> int:
    """Send what is still journaled, end the parent run with the pool's summary and print it; the exit status
    (EXIT_STORE_AWAY when the store stopped answering: the journal keeps what it did not get)."""
    from sweeps.tracking import store_away

    sweep, store = invocation.sweep, invocation.store
    try:
        if not recorder.finish():
            raise ConnectionError(f"{store.uri} does not answer")
        table, summary, text = summary_of(sweep, store.trial_runs())
        recorder.finish_parent(status, table, summary, text)
    except Exception as exc:
        if not store_away(exc):
            raise
        journaled = recorder.journal.path.exists()
        say(
            f"\n[{sweep.name}] {status.lower()} after {wall:.0f} s, but the MLflow store at {store.uri} is not "
            "answering. Nothing is lost: "
            + (
                f"{len(recorder.queue)} writes wait in {recorder.journal.path}. "
                if journaled
                else "every trial's record is in; only the summary on this run's parent run is missing. "
            )
            + "Run the same command again once the store is back: it sends what waits first, then goes on with "
            "whatever the pool still needs."
        )
        return EXIT_STORE_AWAY
    say(f"\n[{sweep.name}] {status.lower()} after {wall:.0f} s; whole pool:\n{text}")
    say(_overhead_line(table, session.completed, wall, invocation.parallel))
    say(ui_hint(sweep, store))
    say(report_hint(sweep, store.uri))
    if status == "KILLED":
        say(f"[{sweep.name}] interrupted: run the same command again to resume.")
    elif status == "FAILED":
        say(
            f"[{sweep.name}] {len(session.errored)} trial(s) failed; their errors are in MLflow (tag "
            "`error`). Running the same command again retries them."
        )
    return code


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
    from sweeps.journal import leftovers
    from sweeps.tracking import Store, journal_directory, tracking_uri

    uri = tracking_uri(sweep)
    store = Store(uri, sweep.name, create=False)
    waiting = leftovers(journal_directory(sweep))
    runs = store.trial_runs() if store.experiment_id else {}
    looks = []
    if sweep.config.adaptive is not None:  # the pool is what the looks chose so far, not the whole seed axis
        from sweeps.adaptive import look_lines, replay

        state = replay(sweep, {k: r.success for k, r in run_records(runs).items() if r.status == "FINISHED"})
        looks = [line for look in state.looks for line in look_lines(sweep.name, look, replayed=True)]
        sweep = dataclasses.replace(sweep, trials=state.pool)
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
    for line in looks:
        print(line, file=stream)
    if waiting:
        print(
            "not in the store yet: writes journaled by a driver that could not send them "
            f"({', '.join(map(str, waiting))}); `python -m sweeps run {sweep.path}` sends them first.",
            file=stream,
        )
    return EXIT_OK
