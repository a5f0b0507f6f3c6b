"""analysis.rl: the solve table against a hand-built trials frame, and the floors against the perfect policy."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from analysis import rl
from rl_tasks.oracle import episodes_to_solve


def synthetic_trials() -> tuple[pd.DataFrame, pd.Series]:
    """Two cells of four seeds. Copy/q: seeds solve at 300, 900, 2000 (past 10 x 175) and never; Copy/r: none."""
    trials = pd.DataFrame(
        {
            "env": ["Copy"] * 8,
            "agent": ["q"] * 4 + ["r"] * 4,
            "seed": [0, 1, 2, 3] * 2,
            "success": [True, True, True, False] + [False] * 4,
            "steps_to_success": [300.0, 900.0, 2000.0, math.nan] + [math.nan] * 4,
            "eval/seq_accuracy@100": [1.0, 0.5, 1.0, 0.0] + [0.0] * 4,
        }
    )
    floor = pd.Series([150.0, 180.0, 175.0, 175.0] * 2)
    return trials, floor


def test_solve_table_counts_only_seeds_solved_within_the_multiple_of_their_own_floor():
    trials, floor = synthetic_trials()
    table = rl.solve_table(trials, ["env", "agent"], floor, multiple=10).set_index("agent")
    q, r = table.loc["q"], table.loc["r"]
    assert (q["seeds"], q["solved"], r["solved"]) == (4, 2, 0)  # 2000 > 10 x 175 does not count
    assert q["median_episodes"] == 600.0  # of 300 and 900
    assert q["median_floor"] == 175.0  # of 150, 180, 175, 175
    assert q["median_ratio"] == pytest.approx((300 / 150 + 900 / 180) / 2)  # 2.0 and 5.0
    assert q["acc_mean"] == pytest.approx(2.5 / 4) and q["acc_perfect"] == 2
    assert math.isnan(r["median_episodes"]) and math.isnan(r["median_ratio"])
    assert r["wilson_low"] == 0.0 and 0.39 < r["wilson_high"] < 0.50  # Wilson at 0/4: 0.490


def test_a_larger_multiple_admits_the_late_seed_and_an_unsolvable_floor_admits_none():
    trials, floor = synthetic_trials()
    wide = rl.solve_table(trials, ["agent"], floor, multiple=20).set_index("agent")
    assert wide.loc["q", "solved"] == 3
    unsolvable = rl.solve_table(trials, ["agent"], pd.Series([math.nan] * 8), multiple=10).set_index("agent")
    assert unsolvable.loc["q", "solved"] == 0


def test_solve_markdown_has_a_row_per_cell_with_counts_and_interval():
    trials, floor = synthetic_trials()
    text = rl.solve_markdown(rl.solve_table(trials, ["agent"], floor), ["agent"])
    lines = text.splitlines()
    assert len(lines) == 4 and lines[2].startswith("| q | 2/4 | [")
    assert "| - | 175 | - |" in lines[3]  # no solved seed: no median, no ratio
    assert "| 95% CI |" in lines[0]
    narrower = rl.solve_markdown(rl.solve_table(trials, ["agent"], floor, confidence=0.8), ["agent"])
    assert "| 80% CI |" in narrower.splitlines()[0] and narrower.splitlines()[2] != lines[2]


def test_floors_are_the_perfect_policys_episodes_per_env_seed_and_time_limit():
    trials = pd.DataFrame(
        {
            "env": ["Copy", "Copy", "ReversedAddition3", "ReversedAddition3"],
            "seed": [0, 1, 0, 0],
            "corrected_time_limit": [False, False, False, True],
        }
    )
    found = rl.floors(trials)
    assert found[0] == episodes_to_solve("Copy", 0) and found[1] == episodes_to_solve("Copy", 1)
    assert math.isnan(found[2])  # G19's time limit leaves no time to read three rows
    assert found[3] == episodes_to_solve("ReversedAddition3", 0, corrected_time_limit=True)
