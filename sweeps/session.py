"""The live state of one `run` invocation: what an executor reports its trials' events to (the recorder, the
progress line, which trials completed or failed). No Ray here: any executor can feed it."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from sweeps.expand import Trial
    from sweeps.tracking import SweepRecorder


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
