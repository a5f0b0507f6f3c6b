"""Continuous metrics over seeds (final test error, loss): interquartile mean, stratified bootstrap intervals
and the probability of improvement, after Agarwal et al. 2021 (rliable), written here because rliable is
archived and does not import with current pandas. Scores are (num_runs x num_tasks) arrays; every bootstrap
takes an explicit np.random.Generator.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd
from scipy.stats import trim_mean

from analysis.outcomes import UNPLACED, grouped, outcome_counts, rules_named
from seedcore.record import CONFIDENCE


def iqm(scores: np.ndarray) -> float:
    """Interquartile mean: the mean of the middle 50% of all scores (25% trimmed from each end).
    Hand example: [1, 2, 3, 4, 5, 6, 7, 8] -> mean(3, 4, 5, 6) = 4.5."""
    scores = np.asarray(scores, dtype=float).ravel()
    return float(trim_mean(scores, 0.25)) if scores.size else math.nan


def stratified_bootstrap(
    scores: np.ndarray,
    statistic: Callable[[np.ndarray], float],
    rng: np.random.Generator,
    reps: int = 2000,
    confidence: float = CONFIDENCE,
) -> tuple[float, float, float]:
    """(point, low, high): statistic(scores) and its percentile interval, resampling runs with replacement
    independently within each task (column), so every resample keeps num_runs runs of every task.

    scores: (num_runs, num_tasks) or (num_runs,). rng: the only source of randomness.
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator (np.random.default_rng(seed)), got {rng!r}")
    scores = np.asarray(scores, dtype=float)
    if scores.ndim == 1:
        scores = scores[:, None]
    runs, tasks = scores.shape
    if runs == 0:
        return math.nan, math.nan, math.nan
    columns = np.arange(tasks)[None, :]
    replicates = np.empty(reps)
    for r in range(reps):
        rows = rng.integers(0, runs, size=(runs, tasks))  # (num_runs, num_tasks)
        replicates[r] = statistic(scores[rows, columns])
    tail = (1 - confidence) / 2
    low, high = np.quantile(replicates, [tail, 1 - tail])
    return float(statistic(scores)), float(low), float(high)


def probability_of_improvement(x: np.ndarray, y: np.ndarray, higher_is_better: bool = True) -> float:
    """P(X > Y) + P(X = Y) / 2 for a random run of X against a random run of Y, averaged over tasks
    (the Mann-Whitney U statistic over n_x * n_y). x: (n_x, num_tasks) or (n_x,), y: (n_y, num_tasks) or (n_y,).
    For errors pass higher_is_better=False. Hand example: x = [1, 2], y = [0, 3] -> 0.5."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    x, y = (x[:, None] if x.ndim == 1 else x), (y[:, None] if y.ndim == 1 else y)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x has {x.shape[1]} tasks and y {y.shape[1]}; they must match")
    if not higher_is_better:
        x, y = -x, -y
    per_task = []
    for task in range(x.shape[1]):
        diff = x[:, task][:, None] - y[:, task][None, :]  # (n_x, n_y)
        per_task.append(float(np.mean((diff > 0) + 0.5 * (diff == 0))))
    return float(np.mean(per_task))


def probability_of_improvement_ci(
    x: np.ndarray,
    y: np.ndarray,
    rng: np.random.Generator,
    higher_is_better: bool = True,
    reps: int = 2000,
    confidence: float = CONFIDENCE,
) -> tuple[float, float, float]:
    """probability_of_improvement with a percentile interval from resampling the runs of x and of y
    independently (stratified by task)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    x, y = (x[:, None] if x.ndim == 1 else x), (y[:, None] if y.ndim == 1 else y)
    columns = np.arange(x.shape[1])[None, :]
    replicates = np.empty(reps)
    for r in range(reps):
        rx = x[rng.integers(0, len(x), size=x.shape), columns]
        ry = y[rng.integers(0, len(y), size=y.shape), columns]
        replicates[r] = probability_of_improvement(rx, ry, higher_is_better)
    tail = (1 - confidence) / 2
    low, high = np.quantile(replicates, [tail, 1 - tail])
    return probability_of_improvement(x, y, higher_is_better), float(low), float(high)


def iqm_table(
    trials: pd.DataFrame,
    value: str,
    by: list[str],
    rng: np.random.Generator,
    reps: int = 2000,
    confidence: float = CONFIDENCE,
) -> pd.DataFrame:
    """Per group: IQM of the column `value` with its bootstrap interval, and how many runs have no value
    (diverged or crashed runs never evaluated): they are counted, not silently left out."""
    rows = []
    for key, group in grouped(trials, by):
        values = group[value].astype(float).dropna().to_numpy()
        point, low, high = stratified_bootstrap(values, iqm, rng, reps, confidence)
        rows.append(
            {
                **key,
                **outcome_counts(group),
                "value": value,
                "n_with_value": len(values),
                "n_without_value": len(group) - len(values),
                "iqm": point,
                "low": low,
                "high": high,
                "median": float(np.median(values)) if len(values) else math.nan,
                "rule": rules_named(group),
            }
        )
    return pd.DataFrame(rows)


def improvement_table(
    trials: pd.DataFrame,
    value: str,
    by: list[str],
    rng: np.random.Generator,
    higher_is_better: bool = False,
    reps: int = 1000,
) -> pd.DataFrame:
    """Probability of improvement of group a over group b on the column `value` (runs with a value), with its
    bootstrap interval, for every pair of groups (runs unplaced in a `by` column, outcomes.UNPLACED, are in
    none). Errors: higher_is_better=False (the default)."""
    from itertools import combinations

    groups = {
        tuple(key.values()): group[value].astype(float).dropna().to_numpy()
        for key, group in grouped(trials, by)
        if UNPLACED not in key.values()
    }
    rows = []
    for a, b in combinations(groups, 2):
        if len(groups[a]) == 0 or len(groups[b]) == 0:
            point = low = high = math.nan
        else:
            point, low, high = probability_of_improvement_ci(groups[a], groups[b], rng, higher_is_better, reps)
        rows.append(
            {
                "a": " ".join(f"{c}={v}" for c, v in zip(by, a, strict=True)),
                "b": " ".join(f"{c}={v}" for c, v in zip(by, b, strict=True)),
                "n_a": len(groups[a]),
                "n_b": len(groups[b]),
                "value": value,
                "p_improvement": point,
                "low": low,
                "high": high,
            }
        )
    return pd.DataFrame(rows, columns=["a", "b", "n_a", "n_b", "value", "p_improvement", "low", "high"])
