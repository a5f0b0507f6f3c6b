"""The driver-side Tune callback: records every trial in MLflow (through a SweepRecorder) and keeps the live
progress line. It is the only MLflow writer of a sweep.

Tune pickles its callbacks into the experiment (tuner.pkl) and unpickles them on `Tuner.restore`. The
callback therefore holds only a session name; the live recorder and progress sit in `SESSIONS`, registered by
the executor around each `fit` (`recording`), so a restored experiment reports to the current driver's recorder
and not to a stale copy."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ray import tune

from sweeps.expand import Trial
from sweeps.session import Session
from sweeps.trainable import MEMBER_KEY, NODE_KEY, PACK_CHECKPOINT_KEY, RESULT_KEY, SKIPPED_KEY

SESSIONS: dict[str, Session] = {}
"""sweep name -> the live session of this driver, while an executor runs its trials (see `recording`)."""


@contextmanager
def recording(session: Session) -> Iterator[None]:
    """Route the events of callbacks named after the session's sweep to it, for the duration of one `fit`.

    A registry and not a reference held by the callback: `Tuner.restore` rebuilds the callbacks from tuner.pkl
    and (Ray 2.x) takes no new ones, so a restored callback can only find the current session by name."""
    name = session.recorder.sweep.name
    SESSIONS[name] = session
    try:
        yield
    finally:
        SESSIONS.pop(name, None)


class RecordingCallback(tune.Callback):
    def __init__(self, session: str):
        self.session = session

    def __reduce__(self) -> tuple[Any, ...]:  # pickled into tuner.pkl as its name only
        return (RecordingCallback, (self.session,))

    @property
    def live(self) -> Session:
        return SESSIONS[self.session]

    def _lookup(self, key: str) -> Trial | None:
        """The pool trial with this key, unless this driver skips it or has already finished it (a retried pack
        reports its members that had finished again)."""
        live = self.live
        if key in live.skip or key in live.completed or key not in live.trials:
            return None
        return live.trials[key]

    def _members(self, trial: Any) -> list[Trial]:
        """The pool trials a Tune trial trains: one, or a pack's members (resources.pack)."""
        spec = trial.config["trial"]
        found = (self._lookup(member["trial_key"]) for member in spec.get("pack", [spec]))
        return [member for member in found if member is not None]

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        for found in self._members(trial):
            self.live.recorder.open_trial(found)
            self.live.progress.start(found.key)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if SKIPPED_KEY in result or PACK_CHECKPOINT_KEY in result:
            return
        packed = MEMBER_KEY in result
        found = self._lookup(result[MEMBER_KEY] if packed else trial.config["trial"]["trial_key"])
        if found is None:
            return
        if RESULT_KEY in result:
            entry = self.live.recorder.open.get(found.key)
            if entry is not None:
                entry.result = json.loads(result[RESULT_KEY])
            if packed:  # the pack goes on without it: finish its run now
                self._finish(found, trial, member_folder=found.key)
            return
        if "hostname" in result and "pid" in result:  # Tune fills these in every result
            where = {"host": str(result["hostname"]), "worker_pid": str(result["pid"])}
            where.update({"node_ip": str(result["node_ip"])} if "node_ip" in result else {})
            where.update({"ray_node_id": str(result[NODE_KEY])} if NODE_KEY in result else {})
            self.live.recorder.note_worker(found.key, where)
        self.live.recorder.add_metrics(found.key, result)
        self.live.progress.report(found.key, result)

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        for found in self._members(trial):
            self.live.recorder.note_retry(found.key)
            self.live.progress.recover(found.key)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        packed = "pack" in trial.config["trial"]
        for found in self._members(trial):
            self._finish(found, trial, member_folder=found.key if packed else None)

    def _finish(self, found: Trial, trial: Any, member_folder: str | None) -> None:
        """Record the trial's final result, and its last checkpoint when the sweep logs them (a pack member's
        is its folder in the pack's checkpoint); without a final result, a failure."""
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
                folder = os.path.join(directory, member_folder) if member_folder else directory
                live.recorder.finish_trial(found.key, result, folder if os.path.isdir(folder) else None)
        else:
            live.recorder.finish_trial(found.key, result, None)
        live.completed.add(found.key)
        live.progress.finish(found.key, bool(result["success"]))

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        members = self._members(trial)
        if not members:
            return
        message = "trial failed"
        error_file = getattr(trial, "error_file", None)
        if error_file:
            try:
                with open(error_file) as handle:
                    message = handle.read()[-4000:]
            except OSError:
                pass
        for found in members:
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
