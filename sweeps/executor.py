"""The seam between planning a sweep and running its trials: what the runner asks of an execution engine.

Ray Tune (`sweeps.ray_executor.RayTuneExecutor`) is the one that exists. Another engine implements these four
methods and reports every trial's events to the `Session` it is given; the runner never asks which one it has."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from sweeps.expand import Trial
    from sweeps.session import Session


class Executor(Protocol):
    def connect(self) -> AbstractContextManager[int]:
        """Reach the engine for the whole invocation and check that one trial fits it; yields how many trials
        run at once. Raises SweepConfigError, before anything is launched or recorded, when none ever could."""
        ...

    def launched_keys(self, handle: str) -> set[str]:
        """The trial keys that the earlier execution `handle` (a parent run's `tune_experiment` tag) was
        launched with; empty when that is unknown."""
        ...

    def restore(self, handle: str, trials: list[Trial], session: Session) -> None:
        """Continue `trials`, unfinished in the earlier execution `handle`, from their last checkpoints. Trials
        it cannot continue are left out of `session.completed` and `session.errored`: the fresh phase runs them."""
        ...

    def fresh(self, trials: list[Trial], session: Session) -> None:
        """Run `trials` from step 0 in a new execution, and tag the session's parent run with its handle."""
        ...
