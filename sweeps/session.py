"""The live state of one `run` invocation: what an executor reports its trials' events to (the recorder, the
progress line, which trials completed or failed). No Ray here: any executor can feed it."""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from sweeps.expand import Trial
    from sweeps.tracking import SweepRecorder


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


SHOWN_RUNNING = 4
"""Running trials named on the progress line; the rest are counted (`+5 more`)."""
REFRESH_TTY_S, REFRESH_LOG_S = 10, 30
"""How often the line is printed while nothing changes: on a terminal, and into a log file."""


@dataclass
class Running:
    """What the progress line knows of one running trial, from its reports."""

    label: str
    steps: int = 0
    error: float = math.inf
    """Best (lowest) error reported so far: of the success test once it ran, else the training error."""
    error_name: str = "err"
    tested: bool = False
    """`error` is from the success test (eval at the success length), not from training."""

    def update(self, metrics: dict[str, Any], test_metric: str) -> None:
        if isinstance(metrics.get("step"), int | float):
            self.steps = max(self.steps, int(metrics["step"]))
        tested, trained = metrics.get(test_metric), metrics.get("train/seq_error")
        if _number(tested):
            self.error = tested if not self.tested else min(self.error, tested)
            self.tested, self.error_name = True, "err@" + test_metric.rpartition("@")[2]
        elif _number(trained) and not self.tested:
            self.error = min(self.error, trained)

    def describe(self, budget: int | None) -> str:
        steps = f"{self.steps}/{budget}" if budget else str(self.steps)
        error = f" {self.error_name} {self.error:.2f}" if math.isfinite(self.error) else ""
        return f"{self.label} {steps}{error}"


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def short_labels(trials: list[Trial]) -> dict[str, str]:
    """trial key -> a short name for the progress line: the values of the axes that vary in the pool, then the
    seed (`64-mul-s3`); just the seed (`s3`) when only seeds vary."""

    def text(value: Any) -> str:
        return ">".join(map(str, value)) if isinstance(value, list | tuple) else str(value)

    names = [name for name in (trials[0].axis_values if trials else {}) if name != "seed"]
    varying = [name for name in names if len({text(t.axis_values[name]) for t in trials}) > 1]
    return {t.key: "-".join([*(text(t.axis_values[n])[:12] for n in varying), f"s{t.seed}"]) for t in trials}


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
    labels: dict[str, str] = field(default_factory=dict)
    """key -> the trial's short name on the line (short_labels)."""
    budget: int | None = None
    """Steps (or episodes) per trial, for `1200/5000`; None with a minutes budget only."""
    test_metric: str = ""
    """The report key of the success test (`eval/seq_error@201`): its best value is the trial's error once run."""
    live: dict[str, Running] = field(default_factory=dict)
    """key -> steps and best error of each running trial, from its reports."""
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
        self.live.pop(key, None)  # the retry reports again from its checkpoint
        if self.running.pop(key, None) is not None:
            self.pending += 1
        self.show()

    def report(self, key: str, metrics: dict[str, Any]) -> None:
        """A report of a running trial: its steps and error for the line (printed at the next refresh)."""
        if key in self.running:
            entry = self.live.setdefault(key, Running(self.labels.get(key, key[:8])))
            entry.update(metrics, self.test_metric)

    def finish(self, key: str, success: bool | None) -> None:
        """success None: the trial failed for good (error)."""
        started = self.running.pop(key, None)
        self.live.pop(key, None)
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
            f"ETA {_duration(eta) if eta is not None else '--'}" + self.running_part()
        )

    def running_part(self) -> str:
        """` | running: 64-s3 1200/5000 err 0.31, ...`, the first SHOWN_RUNNING trials in the order they started."""
        reported = [self.live[key] for key in self.running if key in self.live]
        if not reported:
            return ""
        shown = ", ".join(entry.describe(self.budget) for entry in reported[:SHOWN_RUNNING])
        more = f", +{len(reported) - SHOWN_RUNNING} more" if len(reported) > SHOWN_RUNNING else ""
        return f" | running: {shown}{more}"

    def show(self, force: bool = False) -> None:
        """One line per change of the counts, plus a refresh every REFRESH_TTY_S on a terminal (REFRESH_LOG_S into
        a log file) that shows the running trials' progress: a long pool is never silent for minutes, and a
        report of one trial is no reason for a line."""
        line = self.line()
        changed = line.split(" | elapsed")[0] != self.last_line.split(" | elapsed")[0]
        refresh_s = REFRESH_TTY_S if self.stream.isatty() else REFRESH_LOG_S
        if force or changed or time.monotonic() - self.last_print >= refresh_s:
            print(line, file=self.stream, flush=True)
            self.last_print, self.last_line = time.monotonic(), line


@dataclass
class Session:
    """One invocation's trials as they run: an executor calls the recorder and the progress line for each event
    of a trial, and fills `completed`, `errored` and `interrupted`, which decide the invocation's outcome."""

    recorder: SweepRecorder
    progress: Progress
    trials: dict[str, Trial]
    skip: frozenset[str]
    """Keys already finished in MLflow (a restored experiment may still list them as unfinished)."""
    completed: set[str] = field(default_factory=set)
    errored: set[str] = field(default_factory=set)
    interrupted: bool = False
    """Set when an execution ended with trials unfinished (Ctrl-C / SIGTERM of the driver)."""

    def settle(self, launched: list[str]) -> None:
        """After an execution over the `launched` trial keys: one neither completed nor failed was cut off. (A stop
        that lands between two trials ends the execution before the next one exists, so the executor's own view
        of its trials shows nothing unfinished.)"""
        if any(key not in self.completed and key not in self.errored for key in launched):
            self.interrupted = True
