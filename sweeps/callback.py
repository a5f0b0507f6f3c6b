"""The driver-side Tune callback: records every trial in MLflow (through a SweepRecorder) and keeps the live
progress line. It is the only MLflow writer of a sweep.

Tune pickles its callbacks into the experiment (tuner.pkl) and unpickles them on `Tuner.restore`. The
callback therefore holds only a session name; the live recorder and progress sit in `SESSIONS`, registered by
the runner, so a restored experiment reports to the current driver's recorder and not to a stale copy."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

from ray import tune

from sweeps.expand import Trial
from sweeps.tracking import SweepRecorder
from sweeps.trainable import RESULT_KEY, SKIPPED_KEY


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


@dataclass
class Progress:
    """Counts for the live line: pending/running/done over the whole pool, successes, ETA."""

    sweep_name: str
    pool_size: int
    done_before: int
    successes_before: int
    pending: int
    stream: TextIO = field(default_factory=lambda: sys.stdout)
    started: float = field(default_factory=time.monotonic)
    running: dict[str, float] = field(default_factory=dict)
    """key -> start time of the trials running now."""
    durations: list[float] = field(default_factory=list)
    """Wall times of the trials finished by this invocation (for the ETA)."""
    finished: int = 0
    successes: int = 0
    failed: int = 0
    peak_running: int = 0
    last_print: float = 0.0
    last_line: str = ""

    def start(self, key: str) -> None:
        if key not in self.running:
            self.running[key] = time.monotonic()
            self.pending = max(0, self.pending - 1)
            self.peak_running = max(self.peak_running, len(self.running))
        self.show()

    def recover(self, key: str) -> None:
        """A crashed trial waits for its retry: it counts as pending again."""
        if self.running.pop(key, None) is not None:
            self.pending += 1
        self.show()

    def finish(self, key: str, success: bool | None) -> None:
        """success None: the trial failed for good (error)."""
        started = self.running.pop(key, None)
        if started is not None:
            self.durations.append(time.monotonic() - started)
        if success is None:
            self.failed += 1
        else:
            self.finished += 1
            self.successes += int(success)
        self.show(force=True)

    def eta_s(self) -> float | None:
        """Remaining trial-seconds over the trials that run at once; None before the first trial ends."""
        if not self.durations:
            return None
        mean = sum(self.durations) / len(self.durations)
        now = time.monotonic()
        remaining = self.pending * mean + sum(max(mean - (now - t), 0.0) for t in self.running.values())
        return remaining / max(self.peak_running, 1)

    def line(self) -> str:
        done = self.done_before + self.finished
        eta = self.eta_s()
        failed = f", {self.failed} failed" if self.failed else ""
        return (
            f"[{self.sweep_name}] {done}/{self.pool_size} done{failed}, {len(self.running)} running, "
            f"{self.pending} pending | successes {self.successes_before + self.successes}/{done} | "
            f"elapsed {_duration(time.monotonic() - self.started)} | "
            f"ETA {_duration(eta) if eta is not None else '--'}"
        )

    def show(self, force: bool = False) -> None:
        """One line per change, plus a refresh every 10 s on a terminal (60 s into a log file)."""
        line = self.line()
        changed = line.split(" | elapsed")[0] != self.last_line.split(" | elapsed")[0]
        refresh_s = 10 if self.stream.isatty() else 60
        if force or changed or time.monotonic() - self.last_print > refresh_s:
            print(line, file=self.stream, flush=True)
            self.last_print, self.last_line = time.monotonic(), line


@dataclass
class Session:
    recorder: SweepRecorder
    progress: Progress
    trials: dict[str, Trial]
    skip: frozenset[str]
    """Keys already finished in MLflow (a restored experiment may still list them as unfinished)."""
    completed: set[str] = field(default_factory=set)
    errored: set[str] = field(default_factory=set)
    interrupted: bool = False
    """Set when a Tune experiment ended with trials unfinished (Ctrl-C / SIGTERM of the driver)."""


SESSIONS: dict[str, Session] = {}


class RecordingCallback(tune.Callback):
    def __init__(self, session: str):
        self.session = session

    def __reduce__(self) -> tuple[Any, ...]:  # pickled into tuner.pkl as its name only
        return (RecordingCallback, (self.session,))

    @property
    def live(self) -> Session:
        return SESSIONS[self.session]

    def _trial(self, trial: Any) -> Trial | None:
        key = trial.config["trial"]["trial_key"]
        live = self.live
        if key in live.skip or key not in live.trials:
            return None
        return live.trials[key]

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        found = self._trial(trial)
        if found is not None:
            self.live.recorder.open_trial(found)
            self.live.progress.start(found.key)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        found = self._trial(trial)
        if found is None or SKIPPED_KEY in result:
            return
        if RESULT_KEY in result:
            entry = self.live.recorder.open.get(found.key)
            if entry is not None:
                entry.result = json.loads(result[RESULT_KEY])
            return
        if "hostname" in result and "pid" in result:  # Tune fills these in every result
            self.live.recorder.note_worker(found.key, str(result["hostname"]), int(result["pid"]))
        self.live.recorder.add_metrics(found.key, result)

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        found = self._trial(trial)
        if found is not None:
            self.live.recorder.note_retry(found.key)
            self.live.progress.recover(found.key)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        found = self._trial(trial)
        if found is None:
            return
        live = self.live
        entry = live.recorder.open.get(found.key)
        result = entry.result if entry is not None else None
        if result is None:  # ended without the trainable's final report: treat as a failure
            live.recorder.fail_trial(found.key, "the trial ended without reporting a final result")
            live.errored.add(found.key)
            live.progress.finish(found.key, None)
            return
        checkpoint = trial.checkpoint
        if checkpoint is not None and live.recorder.sweep.config.tracking.log_checkpoints:
            with checkpoint.as_directory() as directory:  # local path, or a download from remote storage
                live.recorder.finish_trial(found.key, result, directory)
        else:
            live.recorder.finish_trial(found.key, result, None)
        live.completed.add(found.key)
        live.progress.finish(found.key, bool(result["success"]))

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        found = self._trial(trial)
        if found is None:
            return
        message = "trial failed"
        error_file = getattr(trial, "error_file", None)
        if error_file:
            try:
                with open(error_file) as handle:
                    message = handle.read()[-4000:]
            except OSError:
                pass
        self.live.recorder.fail_trial(found.key, message)
        self.live.errored.add(found.key)
        self.live.progress.finish(found.key, None)

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        self.live.recorder.flush()
        self.live.progress.show()

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        live = self.live
        live.recorder.flush(force=True)
        unfinished = [t for t in trials if t.status in ("PENDING", "RUNNING", "PAUSED")]
        live.interrupted = live.interrupted or bool(unfinished) or bool(live.recorder.open)
