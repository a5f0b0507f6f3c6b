"""What happened to each run, and success as a declared rule that can be re-applied to the logged curves.

Every run of a pool ends in exactly one outcome; none is ever dropped from a table:

    success    the success rule held (under the rule the table names)
    failed     ran to its budget (max_steps, max_minutes) or was stopped by its own no_progress rule
    diverged   the loss became NaN/inf; the trainer stopped it
    crashed    the trial raised and exhausted its retries (MLflow status FAILED, stop_reason `error`)
    censored   the run ended before its outcome under the rule could be known: interrupted (MLflow KILLED or
               still RUNNING) or, after re-judging with another rule, stopped by the recorded rule's success

Rates count every outcome but success as a non-success unless a function says otherwise; every table carries
the count of each outcome (`outcome_counts`). Time-to-success analyses treat every non-success as censored at
the steps (or seconds) it spent.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from seedcore.record import STOP_REASONS

OUTCOMES = ("success", "failed", "diverged", "crashed", "censored")
COUNT_COLUMNS = tuple(f"n_{outcome}" for outcome in OUTCOMES)
"""n_success, n_failed, n_diverged, n_crashed, n_censored: the columns every table carries."""
UNFINISHED_STATUSES = ("RUNNING", "SCHEDULED", "KILLED")


def classify_outcome(status: str, stop_reason: str | None, success: bool) -> str:
    """One run's outcome from its MLflow status, its stop_reason tag and its success flag (see module doc)."""
    if success:
        return "success"
    if status == "FAILED" or stop_reason == "error":
        return "crashed"
    if stop_reason == "diverged":
        return "diverged"
    if not stop_reason or (isinstance(stop_reason, float) and math.isnan(stop_reason)):
        # No stop reason was ever written: the driver was interrupted before the trial ended.
        return "censored" if status in UNFINISHED_STATUSES else "failed"
    if stop_reason == "success":
        # Stopped by a success rule that is not the one being applied (see rejudge).
        return "censored"
    return "failed"


def outcome_counts(trials: pd.DataFrame) -> dict[str, int]:
    """{n_runs, n_success, n_failed, n_diverged, n_crashed, n_censored} of a trials frame (column `outcome`)."""
    counts = trials["outcome"].value_counts()
    unknown = sorted(set(counts.index) - set(OUTCOMES))
    if unknown:
        raise ValueError(f"unknown outcome values {unknown}; outcomes are {', '.join(OUTCOMES)}")
    return {"n_runs": len(trials), **{f"n_{o}": int(counts.get(o, 0)) for o in OUTCOMES}}


def counts_table(trials: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Outcome counts per group (one row per group, plus the rule column): no run is dropped."""
    rows = []
    for key, group in grouped(trials, by):
        rows.append({**key, **outcome_counts(group), "rule": rules_named(group)})
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class SuccessRule:
    """Success: `metric` at test length `length` below `threshold` at `hold` consecutive evaluations (P16:
    seq_error < 0.01 at length 201, held once, i.e. 'ever below') and, with `confirm`, below it again on that
    many fresh examples tested at the deciding evaluation (the trainer's success_confirm)."""

    metric: str = "seq_error"
    threshold: float = 0.01
    length: int = 201
    hold: int = 1
    confirm: int = 0

    def __post_init__(self) -> None:
        if self.metric not in ("seq_error", "digit_error"):
            raise ValueError(f"SuccessRule.metric is {self.metric!r}; use seq_error or digit_error")
        if not 0 < self.threshold <= 1:
            raise ValueError(f"SuccessRule.threshold is {self.threshold}; use a fraction in (0, 1]")
        if self.hold < 1 or self.length < 3 or self.confirm < 0:
            raise ValueError(
                "SuccessRule needs hold >= 1, length >= 3 and confirm >= 0, got "
                f"hold={self.hold}, length={self.length}, confirm={self.confirm}"
            )

    @property
    def curve(self) -> str:
        """The logged curve the rule reads, in the trainer's spelling (e.g. eval/seq_error@201)."""
        return f"eval/{self.metric}@{self.length}"

    @property
    def confirm_curve(self) -> str:
        """The logged curve of the confirmation tests (e.g. confirm/seq_error@201)."""
        return f"confirm/{self.metric}@{self.length}"

    def describe(self) -> str:
        held = f" held {self.hold}x" if self.hold > 1 else ""
        confirmed = f" confirmed on {self.confirm}" if self.confirm else ""
        return f"{self.metric}@{self.length} < {self.threshold:g}{held}{confirmed}"


def rule_from_params(params: dict) -> SuccessRule | None:
    """The rule a run recorded in its params (success_metric, success_threshold, success_length, success_hold,
    success_confirm); None when a run has no such params (e.g. an RL run, whose rule is its own)."""
    try:
        return SuccessRule(
            metric=str(params["success_metric"]),
            threshold=float(params["success_threshold"]),
            length=int(params["success_length"]),
            hold=int(params.get("success_hold", 1) or 1),
            confirm=int(params.get("success_confirm", 0) or 0),
        )
    except (KeyError, TypeError, ValueError):
        return None


def rules_named(trials: pd.DataFrame) -> str:
    """The rule(s) behind a table's success column, for its caption: 'seq_error@201 < 0.01' or a list."""
    if "rule" not in trials or trials.empty:
        return "recorded rule"
    return "; ".join(sorted(trials["rule"].dropna().astype(str).unique())) or "recorded rule"


def first_success_step(
    steps: np.ndarray, values: np.ndarray, threshold: float, hold: int, confirmations: dict | None = None
) -> float:
    """Step at which `values < threshold` has held for `hold` consecutive evaluations; NaN if never.

    steps, values: (n_evals,), sorted by step. Hand example: values [0.5, 0.0, 0.2, 0.0, 0.0] at steps
    [1, 2, 3, 4, 5] with threshold 0.01 gives 2 for hold 1 and 5 for hold 2.
    confirmations: {step: value} of the confirmation tests, for a rule with `confirm`: the deciding step counts
    only if its confirmation is below the threshold too, else the streak restarts (as the trainer does); with
    confirmations {2: 0.05, 4: 0.0}, the example gives 4 for hold 1. A deciding step without a confirmation is a
    ValueError: the curves cannot say whether the rule held there.
    """
    streak = 0
    for step, value in zip(steps, values, strict=True):
        streak = streak + 1 if value < threshold else 0
        if streak < hold:
            continue
        if confirmations is None:
            return float(step)
        if step not in confirmations:
            raise ValueError(f"no confirmation test was logged at step {step:g}")
        if confirmations[step] < threshold:
            return float(step)
        streak = 0
    return math.nan


def rejudge(trials: pd.DataFrame, curves: pd.DataFrame, rule: SuccessRule) -> pd.DataFrame:
    """The trials frame with success, steps_to_success, outcome, time columns and `rule` recomputed under `rule`
    from the logged evaluation curves, without retraining.

    trials: one row per run (load_trials); curves: long form (run_id, metric, step, value) holding at least
    `rule.curve` (load_curves). A run that the recorded rule stopped (stop_reason success) but that fails the
    new rule becomes `censored`: it might have passed with more training, so a stricter rule's rate is a lower
    bound. A run that ended normally without a single evaluation at `rule.length` cannot be judged: that is an
    error naming the runs and the lengths they did log, never a silent failure. Diverged, crashed and
    interrupted runs keep their outcome unless their curve shows the rule held before they stopped.

    When success_length is also an eval length, a run that stops at its success logs one point at that length
    and step: the deciding test, which the final evaluation keeps rather than re-sampling (tests/test_train.py),
    so re-judging with the recorded rule reproduces the recorded success (tests/test_analysis_mlflow.py).
    """
    points = curves[curves["metric"] == rule.curve].sort_values(["run_id", "step"])
    by_run = {run_id: group for run_id, group in points.groupby("run_id", sort=False)}
    checks = curves[curves["metric"] == rule.confirm_curve]
    checks_by_run = {run_id: dict(zip(g["step"], g["value"], strict=True)) for run_id, g in checks.groupby("run_id")}
    wall = curves[curves["metric"] == "time/wall_s"]
    wall_by_run = {run_id: group for run_id, group in wall.groupby("run_id", sort=False)}
    out = trials.copy()
    success, steps_to_success, outcome, wall_to = [], [], [], []
    unjudged = []
    for row in trials.itertuples(index=False):
        run_points = by_run.get(row.run_id)
        if run_points is None:
            step = math.nan
            if row.stop_reason in STOP_REASONS and row.stop_reason != "diverged":  # it ran and was tested
                unjudged.append(row.run_id)
        else:
            confirmations = checks_by_run.get(row.run_id, {}) if rule.confirm else None
            try:
                step = first_success_step(
                    run_points["step"].to_numpy(),
                    run_points["value"].to_numpy(),
                    rule.threshold,
                    rule.hold,
                    confirmations,
                )
            except ValueError as exc:
                raise ValueError(
                    f"rule {rule.describe()} cannot judge run {row.run_id}: {exc} ({rule.confirm_curve}). "
                    "Confirmation tests run only where the run's own rule passed, so a rule with `confirm` can "
                    "re-judge only runs recorded with that rule; re-judge with confirm=0, or load the "
                    f"{rule.confirm_curve} curve with load_curves if it was left out."
                ) from None
        passed = not math.isnan(step)
        success.append(passed)
        steps_to_success.append(step)
        outcome.append(classify_outcome(row.mlflow_status, row.stop_reason, passed))
        wall_to.append(_wall_at(wall_by_run.get(row.run_id), step) if passed else math.nan)
    if unjudged:
        logged = sorted({m for m in curves["metric"].unique() if m.startswith(f"eval/{rule.metric}@")})
        raise ValueError(
            f"rule {rule.describe()} cannot judge {len(unjudged)} finished run(s) (e.g. {unjudged[0]}): they logged "
            f"no {rule.curve}. Curves logged: {', '.join(logged) or 'none'}; pick a length the runs evaluated "
            "(eval_lengths or success_length) or load those curves with load_curves."
        )
    out["success"] = success
    out["steps_to_success"] = steps_to_success
    out["outcome"] = outcome
    out["rule"] = rule.describe()
    out["steps_to_event"] = np.where(out["success"], out["steps_to_success"], out["steps"])
    out["wall_to_event_s"] = np.where(out["success"], wall_to, out["wall_time_s"])
    # A success seen only in a curve whose wall clock was not loaded: fall back to the run's total (an upper bound).
    out["wall_to_event_s"] = out["wall_to_event_s"].fillna(out["wall_time_s"])
    return out


def _wall_at(wall: pd.DataFrame | None, step: float) -> float:
    """Training wall time at `step` from the time/wall_s curve (the first report at or after it)."""
    if wall is None or math.isnan(step):
        return math.nan
    after = wall[wall["step"] >= step]
    return float(after.sort_values("step")["value"].iloc[0]) if len(after) else math.nan


UNPLACED = "unplaced"
"""The group value, in every table, of a `by` column that a run has no value for (load_trials' identity "none",
or a field its record lacks): such runs are counted in rows of their own, never in a cell."""


class UnplacedRunsWarning(UserWarning):
    """Rows were grouped by a column they have no value in: they are counted under UNPLACED."""


def grouped(trials: pd.DataFrame, by: list[str]):
    """(dict of group values, sub-frame) pairs, cells sorted, then the groups holding UNPLACED; the whole frame as
    one group when `by` is empty.

    A row without a value (NaN or None) in a `by` column is not placed in a cell: its group value there is
    UNPLACED, it is counted in a row of its own after the cells, and an UnplacedRunsWarning names its run ids.
    (No resolved run config holds None, so a missing value means the record lacks the field.)"""
    if not by:
        yield {}, trials
        return
    missing = trials[list(by)].isna()
    if not missing.to_numpy().any():
        for key, group in trials.groupby(by, sort=True, dropna=False):
            key = key if isinstance(key, tuple) else (key,)
            yield dict(zip(by, key, strict=True)), group
        return
    _warn_unplaced(trials, missing)
    keys = trials[list(by)].astype(object).where(~missing, UNPLACED)
    unplaced = missing.any(axis=1)
    for rows in (~unplaced, unplaced):
        part = keys[rows]
        for key, index in part.groupby([part[column] for column in by], sort=True).groups.items():
            key = key if isinstance(key, tuple) else (key,)
            yield dict(zip(by, key, strict=True)), trials.loc[index]


def _warn_unplaced(trials: pd.DataFrame, missing: pd.DataFrame) -> None:
    rows = missing.any(axis=1)
    columns = [column for column in missing if missing[column].any()]
    ids = trials.loc[rows, "run_id"].drop_duplicates().tolist() if "run_id" in trials else []
    shown = ", ".join(map(str, ids[:10])) + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")
    warnings.warn(
        f"{int(rows.sum())} row(s) have no value for {', '.join(columns)}"
        + (f" (run ids: {shown})" if ids else "")
        + f": counted as {UNPLACED!r} there, in rows of their own, never in a cell and never compared. "
        "load_trials' `identity` column says what each run's record carries.",
        UnplacedRunsWarning,
        stacklevel=4,
    )


def pool_summary(trials: pd.DataFrame) -> str:
    """One markdown line for a notebook: the experiment, its runs by outcome, the success rule(s), the axes."""
    counts = outcome_counts(trials)
    parts = ", ".join(f"{counts[f'n_{o}']} {o}" for o in OUTCOMES)
    axes = ", ".join(trials.attrs.get("science_axes", [])) or "none"
    return (
        f"**{trials.attrs.get('experiment', '?')}**: {counts['n_runs']} runs ({parts}); "
        f"success rule: `{rules_named(trials)}`; science axes: {axes}"
    )
