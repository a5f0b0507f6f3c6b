"""RL pools against the perfect policy: the solve table (solved within k x the floor, episodes to solve against
the floor, greedy accuracy at a test length).

A task's floor is what a hand-coded perfect policy needs (rl_tasks.oracle.episodes_to_solve): even a policy that
never errs waits for G19's curriculum to reach lengths whose rewards pass the threshold. Floors depend on the
env, its settings and the run's data seed (the env's inputs), so `floors` computes one per run; `solve_table` is
a pure function of a trials frame (analysis.load.load_trials) that holds them.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from analysis.outcomes import grouped
from analysis.rates import wilson_interval
from seedcore.record import CONFIDENCE

FLOOR_SEARCH_EPISODES = 20000
"""A perfect policy that has not solved the env by then never will with these settings (floor NaN)."""


def floors(trials: pd.DataFrame) -> pd.Series:
    """Each run's floor: the perfect policy's episodes to solve its env (with its corrected_time_limit, if set)
    from its data seed; NaN where no perfect policy solves it (ReversedAddition3 under G19's time limit). One
    oracle run per distinct (env, data seed, time-limit setting), a second or less each."""
    from rl_tasks.oracle import episodes_to_solve

    def data_seed(row: pd.Series) -> int:
        value = row.get("data_seed")
        return int(row["seed"] if value is None or pd.isna(value) else value)

    def corrected(row: pd.Series) -> bool:
        value = row.get("corrected_time_limit", False)
        return bool(value) and not pd.isna(value) and str(value).lower() != "false"

    cache: dict[tuple[str, int, bool], float] = {}
    values = []
    for _, row in trials.iterrows():
        key = (str(row["env"]), data_seed(row), corrected(row))
        if key not in cache:
            kwargs = {"corrected_time_limit": True} if key[2] else {}
            found = episodes_to_solve(key[0], key[1], FLOOR_SEARCH_EPISODES, **kwargs)
            cache[key] = math.nan if found is None else float(found)
        values.append(cache[key])
    return pd.Series(values, index=trials.index, name="floor", dtype=float)


def solve_table(
    trials: pd.DataFrame,
    by: list[str],
    floor: pd.Series,
    multiple: float = 10.0,
    length: int = 100,
    confidence: float = CONFIDENCE,
) -> pd.DataFrame:
    """One row per cell: seeds that solved within `multiple` x their own floor, with a Wilson interval; the median
    episodes to solve of those seeds, the median floor, and the median of their per-seed ratios; the greedy test
    at input length `length` (the final `eval/seq_accuracy@<length>`).

    trials: (runs,) rows with `success`, `steps_to_success` (episodes before the solving 100-episode window) and
    `eval/seq_accuracy@<length>` (NaN where not logged); by: the cell columns; floor: (runs,) episodes to solve of
    the perfect policy, aligned with trials (NaN: unsolvable, so no run counts as solved within a multiple of it).
    A run that solved later than `multiple` x floor counts as unsolved here. Columns: by..., seeds, solved, rate,
    wilson_low, wilson_high, median_episodes, median_floor, median_ratio (NaN when no seed solved),
    acc_mean (mean accuracy over all seeds), acc_perfect (seeds with accuracy 1.0).
    """
    accuracy_column = f"eval/seq_accuracy@{length}"
    episodes = trials["steps_to_success"].astype(float)
    within = trials["success"].astype(bool) & (episodes <= multiple * floor.astype(float))
    frame = trials.assign(_within=within, _floor=floor.astype(float), _episodes=episodes)
    accuracy = trials[accuracy_column] if accuracy_column in trials else pd.Series(math.nan, index=trials.index)
    frame["_accuracy"] = accuracy.astype(float)
    rows = []
    for key, group in grouped(frame, by):
        solved = group[group["_within"]]
        low, high = wilson_interval(len(solved), len(group), confidence)
        ratios = solved["_episodes"] / solved["_floor"]
        rows.append(
            {
                **key,
                "seeds": len(group),
                "solved": len(solved),
                "rate": len(solved) / len(group) if len(group) else math.nan,
                "wilson_low": low,
                "wilson_high": high,
                "median_episodes": float(solved["_episodes"].median()) if len(solved) else math.nan,
                "median_floor": float(group["_floor"].median()) if group["_floor"].notna().any() else math.nan,
                "median_ratio": float(ratios.median()) if len(solved) else math.nan,
                "acc_mean": float(group["_accuracy"].mean()) if group["_accuracy"].notna().any() else math.nan,
                "acc_perfect": int((group["_accuracy"] >= 1.0).sum()),
            }
        )
    table = pd.DataFrame(rows)
    table.attrs["confidence"] = confidence  # for solve_markdown's interval header
    return table


def solve_markdown(table: pd.DataFrame, by: list[str], multiple: float = 10.0, length: int = 100) -> str:
    """The solve table as a markdown table for a report or a README; the interval's header gives the confidence
    `solve_table` used."""
    header = [
        *by,
        f"solved <= {multiple:g}x floor",
        f"{table.attrs.get('confidence', CONFIDENCE):.0%} CI",
        "median episodes (solved)",
        "floor",
        "ratio",
        f"acc@{length} mean",
        f"acc@{length} = 1",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in table.to_dict("records"):
        cells = [str(row[column]) for column in by]
        cells += [
            f"{row['solved']}/{row['seeds']}",
            f"[{row['wilson_low']:.2f}, {row['wilson_high']:.2f}]",
            _number(row["median_episodes"], "{:.0f}"),
            _number(row["median_floor"], "{:.0f}"),
            _number(row["median_ratio"], "{:.1f}x"),
            _number(row["acc_mean"], "{:.2f}"),
            f"{row['acc_perfect']}/{row['seeds']}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _number(value: float, template: str) -> str:
    return "-" if value is None or np.isnan(value) else template.format(value)
