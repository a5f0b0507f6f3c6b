"""The tables of docs/neural-gpu-fidelity.md's "Measured ablations" section, read back from the pool's record.

    python docs/f17_ablation_tables.py [EXPERIMENT] [--tracking-uri URI]

Prints markdown: per arm the recorded rule's rate with its Wilson interval and Kaplan-Meier median steps, the same
runs re-judged with P16's sequence-error rule, when each run first got the training length right (the trainer's
success gate, evaluated without dropout), and the errors at 10x and 100x at the end; then each arm against the
recipe now as a rate difference (Newcombe, Fisher) and as a probability of improvement on the errors.
"""

from __future__ import annotations

import argparse
import math
import warnings

import numpy as np
import pandas as pd

from analysis.continuous import probability_of_improvement_ci
from analysis.load import load_curves, load_trials
from analysis.outcomes import SuccessRule, rejudge
from analysis.rates import compare_two, rate_table
from analysis.survival import km_median, logrank

ARM_FIELDS = ["optimizer", "clip_norm", "lr_decay_rule", "init", "dropout"]
NOW = ("adamax_f17", 0.0, "f17", "f17", 0.5)
GATE = 0.05  # the trainer's success gate: training-length sequence error below this opens the success test
LAST_EVALS = 3  # training-length error at the end: the mean of the last evaluations (16 examples each)


def arm(row: pd.Series) -> tuple:
    return tuple(float(row[f]) if f in ("clip_norm", "dropout") else row[f] for f in ARM_FIELDS)


NAMES = {
    NOW: "recipe now (dropout 0.5)",
    ("adamax_f17", 0.0, "f17", "f17", 0.1): "recipe now, dropout 0.1",
    ("adamax", 1.0, "k15", "torch", 0.5): "four fixes reverted (dropout 0.5)",
    ("adamax", 1.0, "k15", "torch", 0.1): "recipe before the audit",
}


def label(key: tuple) -> str:
    fields = " ".join(
        f"{f}={v:g}" if isinstance(v, float) else f"{f}={v}" for f, v in zip(ARM_FIELDS, key, strict=True)
    )
    return f"{NAMES[key]}: {fields}" if key in NAMES else fields


def interval(successes: int, n: int, low: float, high: float) -> str:
    return f"{successes}/{n} [{low:.2f}, {high:.2f}]"


def steps(median: float) -> str:
    return "not reached" if math.isinf(median) or math.isnan(median) else f"{median:.0f}"


def gate_steps(trials: pd.DataFrame, curves: pd.DataFrame) -> pd.Series:
    """First step whose training-length test (no dropout) was under GATE; NaN if never."""
    train = curves[curves["metric"] == "eval/seq_error@train"]
    first = train[train["value"] < GATE].groupby("run_id")["step"].min()
    return trials["run_id"].map(first)


def end_train_error(trials: pd.DataFrame, curves: pd.DataFrame) -> pd.Series:
    train = curves[curves["metric"] == "eval/digit_error@train"].sort_values("step")
    last = train.groupby("run_id")["value"].apply(lambda v: float(v.tail(LAST_EVALS).mean()))
    return trials["run_id"].map(last)


def gate_as_event(group: pd.DataFrame) -> pd.DataFrame:
    """The runs with reaching the gate as their event, for the log-rank test of time to the training length."""
    out = group.copy()
    out["outcome"] = np.where(out["gate_step"].notna(), "success", "failed")
    out["gate_time"] = out["gate_step"].fillna(out["steps"])
    return out


def spread(values: pd.Series) -> str:
    values = values.dropna()
    if values.empty:
        return "—"
    return f"{values.median():.3f} ({values.min():.3f}-{values.max():.3f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiment", nargs="?", default="badd_f17_ablation_cpu")
    parser.add_argument("--tracking-uri", default="sqlite:///runs/mlflow.db")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=FutureWarning)
    trials = load_trials(args.experiment, args.tracking_uri)
    curves = load_curves(
        trials,
        ["eval/seq_error@train", "eval/digit_error@train", "eval/seq_error@131", "time/wall_s"],
        args.tracking_uri,
    )
    trials["arm"] = trials.apply(arm, axis=1)
    trials["gate_step"] = gate_steps(trials, curves)
    trials["train_digit_error_end"] = end_train_error(trials, curves)
    p16 = rejudge(trials, curves, SuccessRule("seq_error", 0.01, 131))
    recorded = rate_table(trials, ["arm"]).set_index("arm")
    strict = rate_table(p16, ["arm"]).set_index("arm")
    rule = recorded["rule"].iloc[0]

    print(
        f"| arm | runs | {rule}: successes/n [95% Wilson] | median steps to it | seq_error@131 < 0.01 | "
        "training length right (gate) | median steps to gate | digit error at 13, end | digit error at 131 | "
        "digit error at 1301 | seq error at 131 |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for key, group in trials.groupby("arm", sort=False):
        r, s = recorded.loc[[key]].iloc[0], strict.loc[[key]].iloc[0]
        events = group["outcome"].eq("success").to_numpy()
        median = km_median(group["steps_to_event"].to_numpy(float), events)[0]
        gate_events = group["gate_step"].notna().to_numpy()
        gate_durations = group["gate_step"].fillna(group["steps"]).to_numpy(float)
        gate_median = km_median(gate_durations, gate_events)[0]
        print(
            f"| {label(key)} | {len(group)} | {interval(r.successes, r.n, r.wilson_low, r.wilson_high)} | "
            f"{steps(median)} | {interval(s.successes, s.n, s.wilson_low, s.wilson_high)} | "
            f"{int(gate_events.sum())}/{len(group)} | {steps(gate_median)} | "
            f"{spread(group['train_digit_error_end'])} | {spread(group['eval/digit_error@131'])} | "
            f"{spread(group['eval/digit_error@1301'])} | {spread(group['eval/seq_error@131'])} |"
        )

    print(
        "\n| arm against the recipe now | rate difference [95% Newcombe], Fisher p | "
        "P(lower digit error at 13, end) [95%] | P(lower digit error at 131) [95%] | "
        "time to the training length: log-rank p |"
    )
    print("|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    now = trials[trials["arm"] == NOW]
    for key, group in trials.groupby("arm", sort=False):
        if key == NOW:
            continue
        a, b = recorded.loc[[key]].iloc[0], recorded.loc[[NOW]].iloc[0]
        diff = compare_two(int(a.successes), int(a.n), int(b.successes), int(b.n))
        cells = []
        for column in ("train_digit_error_end", "eval/digit_error@131"):
            x, y = group[column].dropna().to_numpy(), now[column].dropna().to_numpy()
            point, low, high = probability_of_improvement_ci(x, y, rng, higher_is_better=False)
            cells.append(f"{point:.2f} [{low:.2f}, {high:.2f}]")
        print(
            f"| {label(key)} | {diff.difference:+.2f} [{diff.low:+.2f}, {diff.high:+.2f}], p = {diff.p_value:.2f} | "
            f"{cells[0]} | {cells[1]} | {logrank(gate_as_event(group), gate_as_event(now), 'gate_time').p_value:.2g} |"
        )
    spent = trials.groupby("arm", sort=False)["wall_time_s"].sum() / 60
    print("\ntraining minutes per arm (trial wall time):", ", ".join(f"{label(k)}: {v:.0f}" for k, v in spent.items()))


if __name__ == "__main__":
    main()
