"""Time and compute to success: Kaplan-Meier with censoring, log-rank, expected compute per successful model.

A run that never succeeded is censored at the steps (or seconds) it spent, whatever stopped it: budget,
no_progress, divergence, a crash or an interruption. Dropping those runs, or counting only successes, would
make success look fast and cheap (the survivorship bias of tables built from finished successful runs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from lifelines import KaplanMeierFitter
from lifelines.statistics import logrank_test
from lifelines.utils import median_survival_times

from analysis.outcomes import UNPLACED, grouped, outcome_counts, rules_named
from analysis.rates import CONFIDENCE, wilson_interval

TIME_COLUMNS = {"steps": "steps_to_event", "wall": "wall_to_event_s"}
"""Durations in a trials frame: steps (or episodes) and training wall seconds to success, or to the end of a
run that never succeeded."""


def _durations(trials: pd.DataFrame, time: str) -> tuple[np.ndarray, np.ndarray]:
    """(durations, events), each (n_runs,): time to success, or to censoring; events 1 for successes."""
    column = TIME_COLUMNS.get(time, time)
    durations = trials[column].astype(float).fillna(0.0).to_numpy()  # a run that logged nothing spent ~0
    events = (trials["outcome"] == "success").to_numpy().astype(int)
    return durations, events


def fit_km(durations: np.ndarray, events: np.ndarray, confidence: float = CONFIDENCE) -> KaplanMeierFitter:
    """lifelines' Kaplan-Meier fit of 'not yet succeeded' (durations, events: (n_runs,))."""
    kmf = KaplanMeierFitter(alpha=1 - confidence)
    kmf.fit(np.asarray(durations, dtype=float), event_observed=np.asarray(events, dtype=int))
    return kmf


def km_curve(durations: np.ndarray, events: np.ndarray, confidence: float = CONFIDENCE) -> pd.DataFrame:
    """The Kaplan-Meier table: time, at_risk, events, censored, survival (P(no success yet)), ci_low, ci_high,
    and success = 1 - survival (the cumulative fraction of runs that succeeded by `time`) with its interval."""
    kmf = fit_km(durations, events, confidence)
    table = kmf.event_table
    ci = kmf.confidence_interval_survival_function_
    out = pd.DataFrame(
        {
            "time": table.index.to_numpy(dtype=float),
            "at_risk": table["at_risk"].to_numpy(),
            "events": table["observed"].to_numpy(),
            "censored": table["censored"].to_numpy(),
            "survival": kmf.survival_function_.iloc[:, 0].to_numpy(),
            "ci_low": ci.iloc[:, 0].to_numpy(),
            "ci_high": ci.iloc[:, 1].to_numpy(),
        }
    )
    out["success"] = 1 - out["survival"]
    out["success_low"] = 1 - out["ci_high"]
    out["success_high"] = 1 - out["ci_low"]
    return out


def km_median(durations: np.ndarray, events: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(median, low, high) time to success; math.inf where fewer than half the runs succeeded (not reached)."""
    kmf = fit_km(durations, events, confidence)
    interval = median_survival_times(kmf.confidence_interval_)
    return float(kmf.median_survival_time_), float(interval.iloc[0, 0]), float(interval.iloc[0, 1])


def km_table(trials: pd.DataFrame, by: list[str], time: str = "steps", confidence: float = CONFIDENCE) -> pd.DataFrame:
    """Per group: outcome counts, events and censored runs, median time to success with its interval
    (inf = not reached) and the fraction succeeded by the longest time observed. time: 'steps', 'wall' or a
    column name."""
    rows = []
    for key, group in grouped(trials, by):
        durations, events = _durations(group, time)
        median, low, high = km_median(durations, events, confidence)
        curve = km_curve(durations, events, confidence)
        rows.append(
            {
                **key,
                **outcome_counts(group),
                "events": int(events.sum()),
                "censored": int(len(events) - events.sum()),
                "median": median,
                "median_low": low,
                "median_high": high,
                "success_by_end": float(curve["success"].iloc[-1]),
                "time": TIME_COLUMNS.get(time, time),
                "rule": rules_named(group),
            }
        )
    return pd.DataFrame(rows)


def km_curves(trials: pd.DataFrame, by: list[str], time: str = "steps", confidence: float = CONFIDENCE) -> pd.DataFrame:
    """km_curve per group in long form (the group columns first), for plotting."""
    parts = []
    for key, group in grouped(trials, by):
        curve = km_curve(*_durations(group, time), confidence)
        for name, value in key.items():
            curve.insert(0, name, value)
        curve["n_runs"] = len(group)
        parts.append(curve)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


@dataclass(frozen=True)
class LogRank:
    statistic: float
    p_value: float
    n_a: int
    events_a: int
    n_b: int
    events_b: int


def logrank(trials_a: pd.DataFrame, trials_b: pd.DataFrame, time: str = "steps") -> LogRank:
    """lifelines' log-rank test of equal time-to-success distributions, censored runs included."""
    durations_a, events_a = _durations(trials_a, time)
    durations_b, events_b = _durations(trials_b, time)
    result = logrank_test(durations_a, durations_b, event_observed_A=events_a, event_observed_B=events_b)
    return LogRank(
        float(result.test_statistic),
        float(result.p_value),
        len(events_a),
        int(events_a.sum()),
        len(events_b),
        int(events_b.sum()),
    )


def compute_per_success(
    compute: np.ndarray,
    successes: np.ndarray,
    confidence: float = CONFIDENCE,
    method: str = "wilson",
    rng: np.random.Generator | None = None,
    reps: int = 2000,
) -> tuple[float, float, float]:
    """Expected compute per successful model (ERT): (total compute of every run) / (number of successes).

    compute: (n_runs,) compute each run spent (steps, seconds, ...), failed and censored runs included;
    successes: (n_runs,) 0/1. Equals mean compute per run / success rate, so:
      method='wilson': interval mean / [rate_high, rate_low] from the rate's Wilson interval (mean compute per
        run taken as known; the rate's uncertainty dominates for small pools). Finite lower end even at 0/N.
      method='bootstrap': percentile interval over resampled runs (needs rng); a resample without a success
        costs math.inf, so the upper end is inf when that happens in more than (1 - confidence)/2 of them.
    Returns (per_success, low, high); per_success is math.inf with no success.
    """
    compute = np.asarray(compute, dtype=float)
    successes = np.asarray(successes, dtype=float)
    n, s = len(compute), int(successes.sum())
    if n == 0:
        return math.nan, math.nan, math.nan
    total = float(compute.sum())
    point = total / s if s else math.inf
    if method == "wilson":
        rate_low, rate_high = wilson_interval(s, n, confidence)
        mean = total / n
        return point, mean / rate_high, (mean / rate_low if rate_low > 0 else math.inf)
    if method == "bootstrap":
        if not isinstance(rng, np.random.Generator):
            raise TypeError("compute_per_success(method='bootstrap') needs rng=np.random.default_rng(seed)")
        index = rng.integers(0, n, size=(reps, n))  # (reps, n_runs)
        wins = successes[index].sum(axis=1)
        spent = compute[index].sum(axis=1)
        ratios = np.divide(spent, wins, out=np.full(reps, math.inf), where=wins > 0)
        tail = (1 - confidence) / 2
        low, high = np.quantile(ratios, [tail, 1 - tail], method="inverted_cdf")
        return point, float(low), float(high)
    raise ValueError(f"method is {method!r}; use 'wilson' or 'bootstrap'")


def compute_table(
    trials: pd.DataFrame, by: list[str], compute: str = "steps", confidence: float = CONFIDENCE
) -> pd.DataFrame:
    """Per group: expected compute per success with its Wilson-based interval (compute_per_success), the total
    and mean compute per run, and the outcome counts. compute: a column of compute spent per run
    ('steps' or 'wall_time_s'), counted for every run, including crashed and censored ones."""
    rows = []
    for key, group in grouped(trials, by):
        spent = group[compute].astype(float).fillna(0.0).to_numpy()
        wins = (group["outcome"] == "success").to_numpy()
        per_success, low, high = compute_per_success(spent, wins, confidence)
        rows.append(
            {
                **key,
                **outcome_counts(group),
                "compute": compute,
                "total": float(spent.sum()),
                "mean_per_run": float(spent.mean()) if len(spent) else math.nan,
                "per_success": per_success,
                "low": low,
                "high": high,
                "rule": rules_named(group),
            }
        )
    return pd.DataFrame(rows)


def logrank_table(trials: pd.DataFrame, by: list[str], time: str = "steps") -> pd.DataFrame:
    """Log-rank test for every pair of groups, with Holm's adjustment over the pairs. Runs unplaced in a `by`
    column (outcomes.UNPLACED) are in no pair."""
    from itertools import combinations

    from analysis.rates import holm

    groups = {tuple(key.values()): group for key, group in grouped(trials, by) if UNPLACED not in key.values()}
    rows = []
    for a, b in combinations(groups, 2):
        test = logrank(groups[a], groups[b], time)
        rows.append(
            {
                "a": " ".join(f"{c}={v}" for c, v in zip(by, a, strict=True)),
                "b": " ".join(f"{c}={v}" for c, v in zip(by, b, strict=True)),
                "events_a": f"{test.events_a}/{test.n_a}",
                "events_b": f"{test.events_b}/{test.n_b}",
                "statistic": test.statistic,
                "p_value": test.p_value,
            }
        )
    table = pd.DataFrame(rows, columns=["a", "b", "events_a", "events_b", "statistic", "p_value"])
    table["p_holm"], table["reject_holm"] = holm(table["p_value"].to_numpy())
    table["time"] = TIME_COLUMNS.get(time, time)
    table["rule"] = rules_named(trials)
    return table
