"""The end-of-sweep table: success rate per cell with a Wilson interval at the record's confidence level (95%; an
adaptive pool passes its anytime-valid interval instead), median steps-to-success and failures by stop reason.
Pure functions over a per-trial frame; no Ray, no MLflow."""

from __future__ import annotations

import math
from collections.abc import Callable

import pandas as pd

from analysis.rates import wilson_interval
from seedcore.record import CONFIDENCE, ERROR, FAILED_STOPS

FAILURE_COLUMNS = (*FAILED_STOPS, ERROR)
"""The failed stop reasons (the RL trainer's budget is `max_episodes`), then `error`: the trial crashed more often
than max_failures allowed (MLflow status FAILED)."""


Interval = Callable[[int, int], tuple[float, float]]
"""(successes, trials) -> (low, high) of the success rate."""


def summarize(
    trials: pd.DataFrame,
    cell_columns: list[str],
    interval: Interval = wilson_interval,
    interval_name: str = f"{CONFIDENCE:.0%} CI",
) -> pd.DataFrame:
    """One row per cell.

    trials: one row per trial of the pool, with the cell columns and
      status            FINISHED, FAILED, KILLED, RUNNING or PENDING (never started)
      success           1.0/0.0 for finished trials, NaN otherwise
      steps_to_success  step of first success, NaN when none
      stop_reason       the trainer's stop reason for finished trials
    Returns columns: cell columns, trials, finished, successes, success_rate, ci_low, ci_high,
      median_steps_to_success, one count per FAILURE_COLUMNS entry, unfinished.
    success_rate counts finished trials only; unfinished ones are reported, not guessed. `interval_name` (shown in
    the table's header) is kept in the frame's attrs["interval"].
    """
    groups = trials.groupby(cell_columns, sort=False, dropna=False) if cell_columns else [((), trials)]
    rows = []
    for cell, group in groups:
        cell = cell if isinstance(cell, tuple) else (cell,)
        finished = group[group["status"] == "FINISHED"]
        successes = int((finished["success"] == 1).sum())
        low, high = interval(successes, len(finished)) if len(finished) else (math.nan, math.nan)
        steps = finished.loc[finished["success"] == 1, "steps_to_success"].dropna()
        row = dict(zip(cell_columns, cell, strict=True))
        row.update(
            trials=len(group),
            finished=len(finished),
            successes=successes,
            success_rate=successes / len(finished) if len(finished) else math.nan,
            ci_low=low,
            ci_high=high,
            median_steps_to_success=float(steps.median()) if len(steps) else math.nan,
        )
        for reason in FAILED_STOPS:
            row[reason] = int(((finished["success"] != 1) & (finished["stop_reason"] == reason)).sum())
        row[ERROR] = int((group["status"] == "FAILED").sum())
        row["unfinished"] = int((~group["status"].isin(["FINISHED", "FAILED"])).sum())
        rows.append(row)
    summary = pd.DataFrame(rows)
    summary.attrs["interval"] = interval_name
    return summary


def table_rows(summary: pd.DataFrame, cell_columns: list[str], step_unit: str = "steps") -> list[list[str]]:
    """The summary as text cells, headers first: what both the plain and the markdown table show."""
    headers = [
        *cell_columns,
        "seeds",
        "success",
        f"rate [{summary.attrs.get('interval', f'{CONFIDENCE:.0%} CI')}]",
        f"median {step_unit}",
        "not successful",
    ]
    lines = [headers]
    for row in summary.to_dict("records"):  # records keep each column's type (iterrows makes ints floats)
        rate = f"{row['success_rate']:.2f} [{row['ci_low']:.2f}, {row['ci_high']:.2f}]" if row["finished"] else "-"
        median = row["median_steps_to_success"]
        failures = ", ".join(f"{name} {row[name]}" for name in FAILURE_COLUMNS if row[name])
        if row["unfinished"]:
            failures = ", ".join(filter(None, [failures, f"unfinished {row['unfinished']}"]))
        lines.append(
            [
                *(str(row[c]) for c in cell_columns),
                str(row["trials"]),
                f"{row['successes']}/{row['finished']}",
                rate,
                "-" if math.isnan(median) else f"{median:.0f}",
                failures or "-",
            ]
        )
    return lines


def format_table(summary: pd.DataFrame, cell_columns: list[str], step_unit: str = "steps") -> str:
    """A plain-text table for the terminal and the parent run's summary.txt; `step_unit` names what
    steps_to_success counts (RL: episodes)."""
    headers, *lines = table_rows(summary, cell_columns, step_unit)
    widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h) for i, h in enumerate(headers)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [fmt.format(*headers), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*line) for line in lines]
    return "\n".join(line.rstrip() for line in out)


def format_markdown(summary: pd.DataFrame, cell_columns: list[str], step_unit: str = "steps") -> str:
    """The same table in markdown, for the parent run's description in MLflow's UI (the `mlflow.note.content`
    tag, rendered as markdown)."""
    headers, *lines = table_rows(summary, cell_columns, step_unit)

    def row(cells: list[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    return "\n".join([row(headers), "|" + "---|" * len(headers), *(row(line) for line in lines)])
