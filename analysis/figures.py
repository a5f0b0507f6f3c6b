"""Figures for the notebooks: every one has a title, labelled axes with units, interval bars, and names the
success rule and the number of runs behind each point. Functions take the tables of the other modules and
return a matplotlib Figure; `save` writes it as PNG."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: the report runs without a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from analysis.outcomes import UNPLACED, grouped  # noqa: E402


def save(fig: plt.Figure, output_dir: str | Path, name: str, show: bool = True) -> Path:
    """Write fig as <output_dir>/figures/<name>.png (folders created), show it in a notebook, close it and
    return the path."""
    path = Path(output_dir) / "figures" / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    if show:
        from IPython import get_ipython
        from IPython.display import Image, display

        if get_ipython() is not None:  # the saved PNG itself, so the page shows exactly the file
            display(Image(data=path.read_bytes(), format="png"))
    plt.close(fig)
    return path


def save_table(table: pd.DataFrame, output_dir: str | Path, name: str) -> Path:
    """Write a table as <output_dir>/tables/<name>.csv and return the path."""
    path = Path(output_dir) / "tables" / f"{name}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, index=False)
    return path


def _label(row: pd.Series, columns: list[str]) -> str:
    return ", ".join(f"{c}={row[c]}" for c in columns) or "all runs"


def _rule_line(table: pd.DataFrame) -> str:
    rules = sorted(set(table["rule"].astype(str))) if "rule" in table and len(table) else ["recorded rule"]
    return "success: " + "; ".join(rules)


def rate_figure(rates: pd.DataFrame, x: str | None, hue: str | None = None, title: str = "Success rate") -> plt.Figure:
    """Success rate per group with 95% Wilson interval bars and 's/n' beside each point.

    rates: rate_table output. x: the column on the horizontal axis (e.g. width), None for one bar per group;
    hue: one line per value of this column (e.g. curriculum). Rows whose x is UNPLACED (runs without that field)
    have no position on the axis: the title counts them as not plotted."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    total = int(rates["n_runs"].sum())
    unplaced = rates[x].astype(object) == UNPLACED if x else pd.Series(False, index=rates.index)
    left_out = int(rates.loc[unplaced, "n_runs"].sum())
    not_plotted = f", {left_out} unplaced (no {x}) not plotted" if left_out else ""
    rates = rates[~unplaced]
    groups = [(None, rates)] if hue is None else list(rates.groupby(hue, sort=True))
    offsets = np.linspace(-0.08, 0.08, len(groups)) if len(groups) > 1 else [0.0]
    label_columns = [c for c in rates.columns if c not in RATE_VALUE_COLUMNS and c not in (x, hue)]
    # Without x, one tick per configuration of the other columns; every hue group places its rows on them.
    ticks = list(dict.fromkeys(_label(row, label_columns) for _, row in rates.iterrows()))
    for (value, group), offset in zip(groups, offsets, strict=True):
        if x is None:
            positions = np.array([ticks.index(_label(row, label_columns)) for _, row in group.iterrows()], float)
        else:
            xs = group[x].to_numpy()
            positions = np.log2(xs.astype(float)) if x == "width" else xs.astype(float)
        positions = positions + offset
        errors = np.clip(
            np.vstack([group["rate"] - group["wilson_low"], group["wilson_high"] - group["rate"]]), 0, None
        )
        ax.errorbar(
            positions,
            group["rate"],
            yerr=errors,
            marker="o",
            capsize=4,
            linestyle="-" if x else "none",
            label=None if hue is None else f"{hue}={value}",
        )
        for pos, (_, row) in zip(positions, group.iterrows(), strict=True):
            ax.annotate(
                f"{int(row['successes'])}/{int(row['n'])}",
                (pos, row["rate"]),
                textcoords="offset points",
                xytext=(6, 4),
                fontsize=8,
            )
    if x is None:
        ax.set_xticks(np.arange(len(ticks)), ticks, rotation=30, ha="right")
        ax.set_xlabel("configuration")
    elif x == "width":
        widths = sorted(rates[x].unique())
        ax.set_xticks(np.log2(np.array(widths, dtype=float)), [str(w) for w in widths])
        ax.set_xlabel("width m (maps, log scale)")
    else:
        ax.set_xlabel(x)
    ax.set_ylim(-0.03, 1.03)
    ax.set_ylabel("success rate (fraction of seeds, 95% Wilson CI)")
    ax.set_title(f"{title}\n{_rule_line(rates)}; {total} runs{not_plotted}", fontsize=10)
    if hue is not None:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


RATE_VALUE_COLUMNS = {
    "n_runs",
    "n_success",
    "n_failed",
    "n_diverged",
    "n_crashed",
    "n_censored",
    "successes",
    "n",
    "rate",
    "wilson_low",
    "wilson_high",
    "exact_low",
    "exact_high",
    "rule",
}


def km_figure(curves: pd.DataFrame, by: list[str], unit: str, title: str, rule: str) -> plt.Figure:
    """Cumulative fraction of runs that succeeded by time t (1 - Kaplan-Meier survival) with its 95% band;
    runs that never succeeded are censored at the time they spent (ticks)."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    groups = [((), curves)] if not by else list(curves.groupby(by, sort=True))
    for key, group in groups:
        key = key if isinstance(key, tuple) else (key,)
        name = ", ".join(f"{c}={v}" for c, v in zip(by, key, strict=True)) or "all runs"
        n, events = int(group["n_runs"].iloc[0]), int(group["events"].sum())
        line = ax.step(group["time"], group["success"], where="post", label=f"{name} ({events}/{n} succeeded)")
        ax.fill_between(
            group["time"],
            group["success_low"],
            group["success_high"],
            step="post",
            alpha=0.15,
            color=line[0].get_color(),
        )
        censored = group[group["censored"] > 0]
        ax.plot(censored["time"], censored["success"], "|", color=line[0].get_color(), markersize=9)
    ax.set_xlabel(f"training {unit}")
    ax.set_ylabel("fraction of runs succeeded (1 - KM, 95% CI)")
    ax.set_ylim(-0.03, 1.03)
    total = int(curves.groupby(by)["n_runs"].first().sum()) if by else int(curves["n_runs"].iloc[0])
    ax.set_title(f"{title}\nsuccess: {rule}; {total} runs, | = censored (never succeeded)", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def interval_figure(
    table: pd.DataFrame, value: str, low: str, high: str, label_by: list[str], xlabel: str, title: str, note: str
) -> plt.Figure:
    """Horizontal point-and-interval chart, one row per table row (e.g. compute per success, IQM)."""
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(table) + 1.8))
    ys = np.arange(len(table))
    finite_high = table[high].replace(math.inf, np.nan)
    cap = float(np.nanmax([finite_high.max(), table[value].replace(math.inf, np.nan).max(), 1e-12])) * 1.5
    for y, (_, row) in zip(ys, table.iterrows(), strict=True):
        point = row[value] if math.isfinite(row[value]) else cap
        hi = row[high] if math.isfinite(row[high]) else cap
        ax.plot([row[low], hi], [y, y], color="C0")
        ax.plot([point], [y], "o", color="C0" if math.isfinite(row[value]) else "C3")
        text = f"{row[value]:.3g}" if math.isfinite(row[value]) else "inf (no success)"
        if "n_runs" in row:
            text += f"  n={int(row['n_runs'])}"
        ax.annotate(text, (point, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
        if not math.isfinite(row[high]):
            ax.annotate("-> inf", (cap, y), textcoords="offset points", xytext=(2, -10), fontsize=7, color="C3")
    ax.set_yticks(ys, [_label(row, label_by) for _, row in table.iterrows()])
    ax.set_xlabel(xlabel)
    ax.set_title(f"{title}\n{note}", fontsize=10)
    ax.grid(alpha=0.3)
    return fig


def error_length_figure(table: pd.DataFrame, by: list[str], title: str) -> plt.Figure:
    """Test error against test length per group: IQM over runs with its 95% bootstrap interval, n per point."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    groups = [((), table)] if not by else list(table.groupby(by, sort=True))
    for key, group in groups:
        key = key if isinstance(key, tuple) else (key,)
        name = ", ".join(f"{c}={v}" for c, v in zip(by, key, strict=True)) or "all runs"
        group = group.sort_values("length")
        # A percentile interval need not contain the point estimate: clip so the bar still spans the interval side.
        errors = np.clip(np.vstack([group["iqm"] - group["low"], group["high"] - group["iqm"]]), 0, None)
        ax.errorbar(group["length"], group["iqm"], yerr=errors, marker="o", capsize=4, label=name)
        for _, row in group.iterrows():
            ax.annotate(
                f"n={int(row['n_with_value'])}/{int(row['n_runs'])}",
                (row["length"], row["iqm"]),
                textcoords="offset points",
                xytext=(5, 4),
                fontsize=7,
            )
    metric = table["metric"].iloc[0] if len(table) else "error"
    ax.set_xlabel("test length (symbols)")
    ax.set_ylabel(f"{metric} (IQM over runs, 95% CI)")
    ax.set_ylim(-0.03, 1.03)
    ax.set_title(f"{title}\n{_rule_line(table)}", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def probe_figure(table: pd.DataFrame, x: str, title: str, xlabel: str) -> plt.Figure:
    """Sequence error of probed models against a probe axis (carry-chain length), one line per run."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for (run_id, length), group in table.groupby(["run_id", "length"], sort=False):
        group = group.sort_values(x)
        head = group.iloc[0]
        ax.plot(
            group[x],
            group["seq_error"],
            marker="o",
            label=f"{run_id[:8]} width={head['width']} seed={head['seed']} ({head['outcome']}), L={length}",
        )
    examples = int(table["examples"].iloc[0]) if len(table) else 0
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"sequence error ({examples} examples per point)")
    ax.set_ylim(-0.03, 1.03)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return fig


OUTCOME_COLOURS = {
    "success": "tab:green",
    "failed": "tab:red",
    "diverged": "tab:orange",
    "crashed": "tab:purple",
    "censored": "tab:gray",
}
"""One colour per outcome, the same in every panel."""


def seed_curves_figure(
    curves: pd.DataFrame,
    trials: pd.DataFrame,
    by: list[str],
    metric: str,
    threshold: float | None,
    unit: str,
    title: str,
    columns: int = 4,
) -> plt.Figure:
    """One small panel per cell: `metric` against training time, one line per seed coloured by the run's outcome,
    a dot where a run succeeded (steps_to_success), and the success threshold as a dashed line.

    curves: load_curves output holding `metric`; trials: load_trials (outcome, seed, steps_to_success); by: the
    cell's axes. An error metric is drawn on a symlog axis that is linear below the threshold, so a threshold of
    0.01 is not lost against the floor of a 0-to-1 axis."""
    cells = list(grouped(trials, by))
    columns = max(1, min(columns, len(cells)))
    rows = math.ceil(len(cells) / columns)
    fig, axes = plt.subplots(
        rows, columns, figsize=(3.4 * columns, 2.6 * rows + 0.6), squeeze=False, sharex=True, sharey=True
    )
    points = curves[curves["metric"] == metric]
    by_run = {run_id: group.sort_values("step") for run_id, group in points.groupby("run_id", sort=False)}
    error = metric.split("/")[-1].startswith(("seq_error", "digit_error"))
    seen = set()
    for ax, (key, group) in zip(axes.flat, cells, strict=False):
        for run in group.sort_values("seed" if "seed" in group else "run_id").itertuples(index=False):
            curve = by_run.get(run.run_id)
            if curve is None:
                continue
            colour = OUTCOME_COLOURS.get(run.outcome, "black")
            ax.plot(curve["step"], curve["value"], color=colour, linewidth=1, alpha=0.8, marker=".", markersize=3)
            seen.add(run.outcome)
            if run.outcome == "success" and not math.isnan(run.steps_to_success):
                at = curve[curve["step"] <= run.steps_to_success]
                if len(at):
                    ax.plot([at["step"].iloc[-1]], [at["value"].iloc[-1]], "o", color=colour, markersize=5)
        if threshold is not None:
            ax.axhline(threshold, color="black", linestyle="--", linewidth=1)
        if error:
            if threshold:
                ax.set_yscale("symlog", linthresh=threshold, linscale=0.5)
            ax.set_ylim(0, 1.05)
        successes = int((group["outcome"] == "success").sum())
        ax.set_title(
            f"{', '.join(f'{k}={v}' for k, v in key.items()) or 'all runs'}: {successes}/{len(group)}", fontsize=9
        )
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(cells) :]:
        ax.set_visible(False)
    for column in range(columns):  # the lowest panel of each column (the last row may be short)
        lowest = axes[(len(cells) - 1 - column) // columns, column]
        lowest.set_xlabel(f"training {unit}", fontsize=8)
        lowest.xaxis.set_tick_params(labelbottom=True)
    for ax in axes[:, 0]:
        ax.set_ylabel(metric, fontsize=8)
    handles = [plt.Line2D([], [], color=OUTCOME_COLOURS[o], label=o) for o in OUTCOME_COLOURS if o in seen]
    if threshold is not None:
        handles.append(plt.Line2D([], [], color="black", linestyle="--", label=f"success line {threshold:g}"))
    fig.legend(handles=handles, loc="lower center", ncol=len(handles) or 1, fontsize=8, bbox_to_anchor=(0.5, -0.02))
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig
