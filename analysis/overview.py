"""The report's first page: a pool at a glance. Per cell, how many seeds succeeded with the rate's interval and
the median time to success; the per-seed curves of the metric the success rule reads; what more seeds would buy;
and the looks of an adaptive pool.

Each table comes twice: numbers (saved as CSV, tested) and `readable_*` (rounded strings under column names for
people, shown by the notebook through `html`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.load import load_curves, metric_keys
from analysis.outcomes import OUTCOMES, grouped, rule_from_params
from analysis.planning import interval_half_width, seeds_for_half_width
from analysis.rates import rate_table
from seedcore.record import CONFIDENCE, RL

FACTORS = (2, 4)
"""'What more seeds would buy': the interval half-width with this many times the seeds each cell has."""
TARGET_HALF_WIDTH = 0.1
"""...and the seeds a cell needs for a +-0.1 interval at its observed rate."""
MISSING = "—"
"""How a readable table shows a value that does not exist (no success yet: no median time to success)."""


# --- the rate table ----------------------------------------------------------------------------------------------
def cell_table(trials: pd.DataFrame, by: list[str], confidence: float = CONFIDENCE) -> pd.DataFrame:
    """rates.rate_table (every outcome counted, Wilson and exact intervals) plus, per cell, the median and the
    range of steps_to_success over its successful runs (NaN where none succeeded)."""
    table = rate_table(trials, by, confidence)
    medians, firsts, lasts = [], [], []
    for _, group in grouped(trials, by):
        steps = group.loc[group["outcome"] == "success", "steps_to_success"].dropna()
        medians.append(float(steps.median()) if len(steps) else math.nan)
        firsts.append(float(steps.min()) if len(steps) else math.nan)
        lasts.append(float(steps.max()) if len(steps) else math.nan)
    table["median_steps_to_success"] = medians
    table["first_success_step"] = firsts
    table["last_success_step"] = lasts
    return table


def readable_rates(cells: pd.DataFrame, by: list[str], unit: str = "steps") -> pd.DataFrame:
    """cell_table for reading: the cell's axes, seeds, succeeded, the rate with its 95% Wilson interval, the
    median (and range of) `unit` to success, and the runs that neither succeeded nor failed (diverged, ...)."""
    out = pd.DataFrame({axis: cells[axis].astype(str) for axis in by})
    out["seeds"] = cells["n"].astype(int).astype(str)
    out["succeeded"] = cells["successes"].astype(int).astype(str)
    out["success rate"] = [_fraction(rate) for rate in cells["rate"]]
    out["95% interval"] = [
        _interval(low, high) for low, high in zip(cells["wilson_low"], cells["wilson_high"], strict=True)
    ]
    out[f"median {unit} to success"] = [_count(value) for value in cells["median_steps_to_success"]]
    out[f"range of {unit} to success"] = [
        MISSING if math.isnan(first) else f"{first:,.0f} – {last:,.0f}"
        for first, last in zip(cells["first_success_step"], cells["last_success_step"], strict=True)
    ]
    out["other outcomes"] = [_other_outcomes(row) for _, row in cells.iterrows()]
    return out


def _other_outcomes(row: pd.Series) -> str:
    """'3 failed, 1 diverged': every outcome but success that the cell holds."""
    parts = [f"{int(row[f'n_{o}'])} {o}" for o in OUTCOMES if o != "success" and row.get(f"n_{o}", 0)]
    return ", ".join(parts) or MISSING


# --- what more seeds would buy -------------------------------------------------------------------------------------
def more_seeds_table(
    cells: pd.DataFrame,
    by: list[str],
    factors: tuple[int, ...] = FACTORS,
    target: float = TARGET_HALF_WIDTH,
    confidence: float = CONFIDENCE,
) -> pd.DataFrame:
    """Per cell of a rate table: the Wilson half-width now (n seeds at the observed rate), with each factor x n
    seeds if the rate stayed where it is (planning.interval_half_width), and the seeds for a half-width of `target`
    (planning.seeds_for_half_width). Columns: by..., n, rate, half_width, half_width_x<f>, seeds_for_pm<target>."""
    out = cells[list(by)].copy()  # by column, not by row: a row of mixed types turns integer axes into floats
    out["n"] = cells["n"].astype(int)
    out["rate"] = cells["rate"].astype(float)
    out["half_width"] = [_half_width(rate, n, confidence) for rate, n in zip(out["rate"], out["n"], strict=True)]
    for factor in factors:
        out[f"half_width_x{factor}"] = [
            _half_width(rate, factor * n, confidence) for rate, n in zip(out["rate"], out["n"], strict=True)
        ]
    out[f"seeds_for_pm{target:g}"] = [
        seeds_for_half_width(target, rate, confidence) if n else math.nan
        for rate, n in zip(out["rate"], out["n"], strict=True)
    ]
    return out.reset_index(drop=True)


def _half_width(rate: float, n: int, confidence: float) -> float:
    return float(interval_half_width(rate, n, confidence)) if n else math.nan


def readable_more_seeds(
    table: pd.DataFrame, by: list[str], factors: tuple[int, ...] = FACTORS, target: float = TARGET_HALF_WIDTH
) -> pd.DataFrame:
    """more_seeds_table for reading: '±0.31' now, '±0.23 (16 seeds)' with 2x, ..., and the seeds for ±target."""
    out = pd.DataFrame({axis: table[axis].astype(str) for axis in by})
    out["seeds now"] = table["n"].astype(int).astype(str)
    out["success rate"] = [_fraction(rate) for rate in table["rate"]]
    out["95% interval now"] = [_plus_minus(value) for value in table["half_width"]]
    for factor in factors:
        out[f"with {factor}x the seeds"] = [
            f"{_plus_minus(value)} ({factor * n} seeds)"
            for value, n in zip(table[f"half_width_x{factor}"], table["n"], strict=True)
        ]
    out[f"seeds for ±{target:g}"] = [_count(value) for value in table[f"seeds_for_pm{target:g}"]]
    return out


# --- per-seed curves ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SuccessCurve:
    """The logged curve that shows a run approaching success, and the line it must cross."""

    metric: str
    """Trainer spelling, e.g. eval/seq_error@41 (load_curves reads it)."""
    threshold: float | None
    """The success line, None where the record does not say it (an RL env's own reward threshold)."""
    below: bool
    """Success is below the line (an error), else above it (a reward)."""
    note: str
    """One line for the figure's title: what the curve is and where the line comes from."""


MIN_POINTS = 3
"""A curve drawn per seed needs this many points per run (median over the runs) to show a trajectory."""


def curve_candidates(trials: pd.DataFrame) -> list[SuccessCurve]:
    """The curves that show runs approaching success, best first. Neural GPU: the curve the recorded success rule
    tests (eval/<metric>@<length>), then the same error at the current training length (eval/<metric>@train,
    every eval), then the training error (train/<metric>, every report), each with the rule's threshold as the
    line; RL: the 100-episode mean reward with the recorded reward_threshold."""
    if len(trials) and (trials["trainer"] == RL).all():
        thresholds = trials["reward_threshold"].dropna() if "reward_threshold" in trials else pd.Series(dtype=float)
        threshold = float(thresholds.iloc[0]) if len(thresholds) and thresholds.iloc[0] > 0 else None
        note = "solved: mean reward >= " + (f"{threshold:g}" if threshold is not None else "the env's threshold")
        return [SuccessCurve("episode/reward_mean100", threshold, below=False, note=note)]
    rule = next((r for r in map(rule_from_params, trials.to_dict("records")) if r is not None), None)
    if rule is None:
        return [SuccessCurve("train/seq_error", None, True, "training sequence error")]
    success = f"success: {rule.describe()}"
    return [
        SuccessCurve(rule.curve, rule.threshold, True, success),
        SuccessCurve(f"eval/{rule.metric}@train", rule.threshold, True, f"error at the training length; {success}"),
        SuccessCurve(f"train/{rule.metric}", rule.threshold, True, f"training error (dropout on); {success}"),
    ]


def success_curves(trials: pd.DataFrame, min_points: int = MIN_POINTS) -> tuple[SuccessCurve | None, pd.DataFrame]:
    """The curve to draw per seed and its points (load_curves): the first of curve_candidates that the runs
    logged with at least `min_points` points each (median over runs); else the first logged at all. A rule
    tested only once a run is nearly there (success_gate) logs a point or two: its training-length error shows
    the way there instead. (None, empty) when the runs logged none of them."""
    candidates = [c for c in curve_candidates(trials) if c.metric in set(metric_keys(trials))]
    if not candidates:
        return None, pd.DataFrame(columns=["run_id", "metric", "step", "value", "timestamp"])
    curves = load_curves(trials, [c.metric for c in candidates])
    points = curves.groupby("metric")["run_id"].value_counts()
    dense = [c for c in candidates if c.metric in points and points[c.metric].median() >= min_points]
    chosen = (dense or candidates)[0]
    return chosen, curves[curves["metric"] == chosen.metric].reset_index(drop=True)


# --- adaptive looks ----------------------------------------------------------------------------------------------
LOOKS_INTRO = """## Adaptive looks

The pool ran its minimum of seeds per cell, then looked: where a question was still open it added seeds, and
looked again. The intervals are anytime-valid confidence sequences (analysis/sequential.py), so looking after
every batch keeps each question's error level."""
"""The heading and the paragraph above the looks table (shown only for a pool that took looks)."""


def readable_looks(looks: pd.DataFrame) -> pd.DataFrame:
    """load.load_looks for reading: look, question, cells, counts, interval, decision, why, seeds added."""
    return pd.DataFrame(
        {
            "look": looks["look"].astype(int).astype(str),
            "question": [f"{q} ({kind})" for q, kind in zip(looks["question"], looks["kind"], strict=True)],
            "cells": looks["cells"],
            "successes / seeds": looks["counts"],
            "interval (anytime-valid)": [
                _interval(low, high) for low, high in zip(looks["low"], looks["high"], strict=True)
            ],
            "decision": ["decided" if decided else "open" for decided in looks["decided"]],
            "why": looks["reason"],
            "seeds added": [f"+{int(n)}" if n else MISSING for n in looks["seeds_added"]],
        }
    )


# --- formatting --------------------------------------------------------------------------------------------------
def html(table: pd.DataFrame) -> str:
    """A readable table as HTML: no index column, right-aligned (the report's `readable` style)."""
    return table.to_html(index=False, classes="readable", border=0, na_rep=MISSING, justify="right")


def _fraction(value: float) -> str:
    return MISSING if value is None or math.isnan(value) else f"{value:.2f}"


def _interval(low: float, high: float) -> str:
    return MISSING if math.isnan(low) else f"[{low:.2f}, {high:.2f}]"


def _plus_minus(value: float) -> str:
    return MISSING if math.isnan(value) else f"±{value:.2f}"


def _count(value: float) -> str:
    return MISSING if value is None or not np.isfinite(value) else f"{value:,.0f}"
