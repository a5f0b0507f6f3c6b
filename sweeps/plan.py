"""What one `run` invocation does, decided from the record before anything starts. Pure: no Ray, no MLflow, no I/O.

Resume and growth, in one rule: a trial is done when the record holds a FINISHED run with its key. Each
invocation runs the pool's other trials. If the previous invocation's execution (a Tune experiment) was launched
with some of them and is a part of this pool, it is restored first and continues those from their checkpoints;
whatever is still not done (new seeds, new widths, trials the old experiment never started) runs in a fresh
execution. Tune cannot change a restored experiment's search space, hence the two phases.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from sweeps.expand import Trial


@dataclass(frozen=True)
class RunRecord:
    """What planning needs of one recorded trial run."""

    status: str
    """FINISHED, FAILED, KILLED or RUNNING (MLflow's run status)."""
    success: bool
    """The run recorded `success` = 1."""


@dataclass(frozen=True)
class Plan:
    finished: frozenset[str]
    """Pool keys with a FINISHED run that counts: skipped by this invocation."""
    todo: list[Trial]
    """Every other trial of the pool, in expansion order."""
    restore: list[Trial]
    """Trials of `todo` that the previous execution was launched with: it is restored to continue them."""
    fresh: list[Trial]
    """The rest of `todo`: launched from step 0 in a new execution."""
    stale: list[str]
    """Recorded keys that match no trial of the pool (an earlier version of the config); they stay recorded."""
    retire: list[str]
    """With --restart: every recorded key, pool or stale, in record order; their runs are retired."""
    successes_before: int
    """Successes among `finished`."""

    def fresh_after(self, settled: Collection[str]) -> list[Trial]:
        """What the fresh phase launches once the restore phase has settled (completed or failed) `settled`:
        `fresh`, plus the restore trials it left, e.g. all of them when the old execution could not be restored."""
        return [t for t in self.todo if t.key not in settled]


def plan_run(
    trials: Sequence[Trial], records: Mapping[str, RunRecord], restart: bool, previous_keys: Collection[str]
) -> Plan:
    """The plan for the pool `trials`, given the record (trial key -> its run) and the trial keys the previous
    execution was launched with (empty when there is none). --restart retires the whole record and ignores the
    previous execution: every trial runs again from step 0."""
    pool = {t.key for t in trials}
    retire = list(records) if restart else []
    counted = {} if restart else records
    stale = sorted(k for k in counted if k not in pool)
    finished = frozenset(k for k, r in counted.items() if r.status == "FINISHED" and k in pool)
    todo = [t for t in trials if t.key not in finished]
    todo_keys = {t.key for t in todo}
    previous = set() if restart else set(previous_keys)
    # Restore only an execution whose trials all still belong to the pool (the same pool, or a grown one).
    restorable = previous <= pool and bool(previous & todo_keys)
    restore = [t for t in todo if t.key in previous] if restorable else []
    restore_keys = {t.key for t in restore}
    return Plan(
        finished=finished,
        todo=todo,
        restore=restore,
        fresh=[t for t in todo if t.key not in restore_keys],
        stale=stale,
        retire=retire,
        successes_before=sum(counted[k].success for k in finished),
    )
