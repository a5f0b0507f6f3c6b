"""The summary table against hand-computed cases."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from sweeps.summary import format_table, summarize

Z95 = 1.959963984540054


def wilson_by_hand(successes: int, n: int) -> tuple[float, float]:
    """Wilson (1927): (p + z^2/2n +- z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n). (The interval function itself, which
    the summary takes from analysis.rates, is tested in test_analysis_stats.)"""
    p = successes / n
    centre = p + Z95**2 / (2 * n)
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n))
    return (centre - half) / (1 + Z95**2 / n), (centre + half) / (1 + Z95**2 / n)


def trials_frame() -> pd.DataFrame:
    """Two cells: width 8 with 3 finished (2 successes at 100 and 300 steps) + 1 running;
    width 16 with 1 success (at 50), 1 no_progress, 1 diverged and 1 crashed trial."""
    rows = [
        (8, "FINISHED", 1.0, 100, "success"),
        (8, "FINISHED", 1.0, 300, "success"),
        (8, "FINISHED", 0.0, None, "max_steps"),
        (8, "RUNNING", None, None, None),
        (16, "FINISHED", 1.0, 50, "success"),
        (16, "FINISHED", 0.0, None, "no_progress"),
        (16, "FINISHED", 0.0, None, "diverged"),
        (16, "FAILED", None, None, "error"),
    ]
    return pd.DataFrame(rows, columns=["width", "status", "success", "steps_to_success", "stop_reason"])


def test_summarize_counts_rates_and_failures_per_cell():
    summary = summarize(trials_frame(), ["width"]).set_index("width")
    w8, w16 = summary.loc[8], summary.loc[16]
    assert (w8.trials, w8.finished, w8.successes) == (4, 3, 2)
    assert w8.success_rate == pytest.approx(2 / 3)
    assert (w8.ci_low, w8.ci_high) == pytest.approx(wilson_by_hand(2, 3))
    assert w8.median_steps_to_success == 200
    assert (w8.max_steps, w8.no_progress, w8.error, w8.unfinished) == (1, 0, 0, 1)
    assert (w16.trials, w16.finished, w16.successes) == (4, 3, 1)
    assert w16.median_steps_to_success == 50
    assert (w16.no_progress, w16.diverged, w16.error, w16.unfinished) == (1, 1, 1, 0)


def test_summarize_without_science_axes_is_one_row():
    summary = summarize(trials_frame(), [])
    assert len(summary) == 1 and summary.loc[0, "successes"] == 3 and summary.loc[0, "finished"] == 6


def test_format_table_shows_rates_intervals_and_failures():
    text = format_table(summarize(trials_frame(), ["width"]), ["width"])
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["width", "seeds", "success"]
    assert lines[2].startswith("8 ") and "2/3" in lines[2] and "0.67 [" in lines[2] and "200" in lines[2]
    assert "max_steps 1" in lines[2] and "unfinished 1" in lines[2]
    assert "no_progress 1, diverged 1, error 1" in lines[3]
