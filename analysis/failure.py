"""Where 'successful' models still fail: error against test length from the record, and the failure probes of
neuralgpu.probes (talk slides 23-32): error against carry-chain length, the talk's equal-stretch inputs
(0000...0002 op 0000...0001) and structured against random inputs.

The trainer runs the probes in its final evaluation (TrainConfig.probes; TrainResult.probe_table) and the sweep
records that table as the artifact eval/probe_table.json of each trial's MLflow run. `probe_tables` reads the
recorded tables and re-runs neuralgpu.probes.run_probes only on the saved model of a run that recorded none:
the trainer's state.pt (neuralgpu/train.py Trainer.save), attached to the run as the artifact checkpoint/state.pt.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from analysis.continuous import iqm, stratified_bootstrap
from analysis.load import load_run_tables
from analysis.outcomes import grouped, rules_named
from neuralgpu.assess import load_saved
from neuralgpu.config import TrainConfig
from neuralgpu.probes import run_probes
from neuralgpu.tasks import get_task

CHECKPOINT_ARTIFACT = "checkpoint/state.pt"
PROBE_TABLE = "probe_table"
"""The TrainResult field the sweep records as eval/probe_table.json."""
MODEL_OUTCOMES = ("success", "failed")
"""Outcomes whose final weights are a model: a diverged run's are not, crashed and interrupted runs saved none."""
CARRY_COLUMNS = ["carry", "length", "seq_error", "digit_error", "examples"]
STRETCH_COLUMNS = ["length", "operands", "input", "expected", "model", "correct"]
STRUCTURED_COLUMNS = ["probe", "length", "seq_error", "digit_error", "examples"]


# --- error against test length, from the record -------------------------------------------------------------
def error_by_length(trials: pd.DataFrame, metric: str = "seq_error", keep: list[str] | None = None) -> pd.DataFrame:
    """Long form of the final test errors: one row per run and test length L with a logged eval/<metric>@L.
    Columns: run_id, keep..., outcome, length, value. Runs without a value at L (diverged: no final test)
    have NaN there, so they are counted and never silently missing."""
    pattern = re.compile(rf"^eval/{metric}@(\d+)$")
    lengths = {int(m.group(1)): c for c in trials.columns if (m := pattern.match(c))}
    keep = list(dict.fromkeys(["run_id", *(keep or []), "outcome"]))
    parts = []
    for length, column in sorted(lengths.items()):
        part = trials[keep].copy()
        part["length"] = length
        part["value"] = trials[column].astype(float)
        parts.append(part)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=[*keep, "length", "value"])


def error_length_table(
    trials: pd.DataFrame,
    by: list[str],
    rng: np.random.Generator,
    metric: str = "seq_error",
    reps: int = 1000,
) -> pd.DataFrame:
    """Per group and test length: runs, runs with a value, median, IQM with its stratified-bootstrap 95% interval.
    Note: the value is each run's last evaluation at that length (for a run stopped at success, at its success)."""
    long = error_by_length(trials, metric, keep=by)
    rows = []
    for key, group in grouped(long, [*by, "length"]):
        values = group["value"].dropna().to_numpy()
        point, low, high = stratified_bootstrap(values, iqm, rng, reps) if len(values) else (math.nan,) * 3
        rows.append(
            {
                **key,
                "n_runs": len(group),
                "n_with_value": len(values),
                "median": float(np.median(values)) if len(values) else math.nan,
                "iqm": point,
                "low": low,
                "high": high,
                "metric": metric,
            }
        )
    table = pd.DataFrame(rows)
    table["rule"] = rules_named(trials)
    return table


# --- saved models --------------------------------------------------------------------------------------------
def load_model(path: str | Path, device: str = "cpu") -> tuple[TrainConfig, torch.nn.Module]:
    """(config, model in eval mode) from a trainer checkpoint (a state.pt file or the directory holding it)."""
    saved = load_saved(path, device)
    return saved.cfg, saved.model


def download_checkpoint(run_id: str, destination: str | Path, tracking_uri: str | None = None) -> Path | None:
    """Fetch a run's checkpoint/state.pt artifact into destination/<run_id>/; None when the run has none."""
    import mlflow  # (analysis.load, imported above, turned MLflow's download progress bars off)

    target = Path(destination) / run_id
    target.mkdir(parents=True, exist_ok=True)
    try:
        local = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=CHECKPOINT_ARTIFACT, dst_path=str(target), tracking_uri=tracking_uri
        )
    except Exception:  # noqa: BLE001  (MLflow raises several types for a missing artifact)
        return None
    return Path(local)


def probe_saved_model(
    path: str | Path, rng: np.random.Generator, examples: int | None = None, device: str = "cpu"
) -> tuple[TrainConfig, list[dict]]:
    """(config, probe rows) of a saved model: neuralgpu.probes.run_probes with the run's own probe settings
    (probe_carries, probe_examples unless `examples` is given, success_length), as in the trainer's final
    evaluation. The rows equal a recorded probe table's in form, not in value: the trainer drew its examples
    from its own evaluation stream."""
    cfg, model = load_model(path, device)
    rows = run_probes(
        model,
        cfg.task,
        cfg.probe_carries,
        examples or cfg.probe_examples,
        cfg.success_length,
        rng,
        cfg.eval_chunk,
        device,
    )
    return cfg, rows


def has_probes(task: object) -> bool:
    """Whether neuralgpu.probes probes this task (two-operand arithmetic; it returns no rows for the others).
    An unknown or missing task counts as probed, so the saved model is tried."""
    try:
        spec = get_task(str(task))
    except ValueError:
        return True
    return spec.is_arithmetic and spec.arity == 2


# --- probe tables: recorded, else re-run on the saved model --------------------------------------------------
def probe_tables(
    trials: pd.DataFrame,
    by: list[str],
    destination: str | Path,
    rng: np.random.Generator,
    rerun_max: int = 4,
    examples: int | None = None,
    tracking_uri: str | None = None,
    threads: int = 1,
) -> dict[str, pd.DataFrame]:
    """The failure probes of every run: the probe table the trainer recorded (eval/probe_table.json), else
    neuralgpu.probes re-run on the run's saved model (checkpoints downloaded under `destination`), for at most
    `rerun_max` runs without a record (successful runs first, then the shortest).

    Returns {'runs', 'carries', 'stretches', 'structured'}: 'runs' has one row per run (run_id, by..., width,
    seed, outcome, steps, source, probe_rows), where source is 'recorded', 're-run' or 'none (<why>)'; the
    other three are split_probe_table's, with those run columns (and source) in every row. All tables list
    runs in the same order: successful runs first, then the shortest.

    threads: torch CPU threads for re-runs (restored afterwards). Small models run fastest on one thread; on a
    busy 2-core machine the default of all cores was 13x slower."""
    uri = tracking_uri or trials.attrs.get("tracking_uri")
    tags = [c for c in dict.fromkeys(["run_id", *by, "width", "seed", "outcome", "steps"]) if c in trials]
    order = trials.assign(_success=trials["outcome"] == "success").sort_values(
        ["_success", "steps"], ascending=[False, True], kind="stable"
    )
    runs = order[tags].reset_index(drop=True)
    recorded = load_run_tables(runs, PROBE_TABLE, uri)
    source = dict.fromkeys(recorded["run_id"], "recorded")
    rerun: list[dict] = []
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for row in order.to_dict("records"):
            run_id = row["run_id"]
            if run_id in source:
                continue
            if row["outcome"] not in MODEL_OUTCOMES:
                source[run_id] = f"none ({row['outcome']}: no model)"
            elif not has_probes(row.get("task")):
                source[run_id] = f"none (no probes for {row.get('task')})"
            elif sum(s == "re-run" for s in source.values()) >= rerun_max:
                source[run_id] = f"none (not re-run: rerun_max={rerun_max})"
            elif (path := download_checkpoint(run_id, destination, uri)) is None:
                source[run_id] = "none (no checkpoint artifact)"
            else:
                _, rows = probe_saved_model(path, rng, examples)
                rerun.extend({"run_id": run_id, **r} for r in rows)
                source[run_id] = "re-run"
    finally:
        torch.set_num_threads(previous_threads)
    runs["source"] = runs["run_id"].map(source)
    parts = [part for part in (recorded, pd.DataFrame(rerun)) if len(part)]
    table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["run_id"])
    runs["probe_rows"] = runs["run_id"].map(table["run_id"].value_counts()).fillna(0).astype(int)
    # Run columns first, in the runs' order (merge keeps the left frame's order).
    tagged = runs.drop(columns="probe_rows").merge(table, on="run_id", how="inner")
    return {"runs": runs, **split_probe_table(tagged, [*tags, "source"])}


def split_probe_table(table: pd.DataFrame, tags: list[str]) -> dict[str, pd.DataFrame]:
    """A long probe table (neuralgpu.probes rows, plus run columns `tags`) as three tables:

    'carries': probe carry_chain, error against carry-chain length: tags, carry, length, seq_error, digit_error,
        examples (operands summing to base^carry or base^carry - 1, all at one length).
    'stretches': probe equal_stretch, one row per input: tags, length, operands, input, expected, model (the
        model's answer; numbers most significant digit first with their zero padding), correct.
    'structured': probes random and structured, error on each at one length: tags, probe, length, seq_error,
        digit_error, examples."""
    probe = table["probe"] if "probe" in table else pd.Series(dtype=object, index=table.index)
    carries = table[probe == "carry_chain"]
    stretches = table[probe == "equal_stretch"]
    parsed = [split_example(line) for line in stretches.get("example", [])]
    stretches = stretches.assign(**pd.DataFrame(parsed, index=stretches.index, columns=["input", "expected", "model"]))
    structured = table[probe.isin(["random", "structured"])]

    def pick(part: pd.DataFrame, columns: list[str], types: dict[str, type]) -> pd.DataFrame:
        part = part.reindex(columns=[*tags, *columns]).reset_index(drop=True)
        # Rows of different probes share columns, so counts come back as floats (NaN elsewhere): retype them.
        return part.astype(types) if len(part) else part

    return {
        "carries": pick(carries, CARRY_COLUMNS, {"carry": int, "length": int, "examples": int}),
        "stretches": pick(stretches, STRETCH_COLUMNS, {"length": int, "correct": bool}),
        "structured": pick(structured, STRUCTURED_COLUMNS, {"length": int, "examples": int}),
    }


def split_example(line: str) -> tuple[str, str, str]:
    """(input, expected, model answer) of a neuralgpu.tasks.format_example line with the model's output, e.g.
    '0002 + 0001 = 000003   model: 000001 (wrong)' -> ('0002 + 0001', '000003', '000001')."""
    problem, _, answer = str(line).partition("   model: ")
    question, _, expected = problem.rpartition(" = ")
    return question, expected, answer.rsplit(" (", 1)[0]


def structured_against_random(structured: pd.DataFrame) -> pd.DataFrame:
    """One row per run and length from split_probe_table's 'structured': the run columns, length, then the
    error on random inputs and on structured ones side by side (seq_error_random, seq_error_structured,
    digit_error_random, ...)."""
    keys = [c for c in structured.columns if c not in STRUCTURED_COLUMNS] + ["length"]
    values = ["seq_error", "digit_error", "examples"]
    random = structured[structured["probe"] == "random"][[*keys, *values]]
    other = structured[structured["probe"] == "structured"][[*keys, *values]]
    # run_probes writes both rows or neither; a left merge keeps the runs' order (an outer one sorts the keys).
    return random.merge(other, on=keys, how="left", suffixes=("_random", "_structured"))


def probe_cell_table(
    rows: pd.DataFrame,
    by: list[str],
    x: str,
    rng: np.random.Generator,
    value: str = "seq_error",
    reps: int = 1000,
) -> pd.DataFrame:
    """Per cell (by), probe length and probe point x (e.g. carry): runs, median and IQM of `value` over runs
    with its stratified-bootstrap 95% interval. rows: one row per run and point (split_probe_table's)."""
    out = []
    for key, group in grouped(rows, [*by, "length", x]):
        values = group[value].dropna().to_numpy(dtype=float)
        point, low, high = stratified_bootstrap(values, iqm, rng, reps) if len(values) else (math.nan,) * 3
        out.append(
            {
                **key,
                "n_runs": group["run_id"].nunique(),
                "median": float(np.median(values)) if len(values) else math.nan,
                "iqm": point,
                "low": low,
                "high": high,
                "metric": value,
            }
        )
    return pd.DataFrame(out, columns=[*by, "length", x, "n_runs", "median", "iqm", "low", "high", "metric"])


def logged_lengths(trials: pd.DataFrame, metric: str = "seq_error") -> list[int]:
    """Test lengths L with a final eval/<metric>@L in the trials frame, ascending."""
    pattern = re.compile(rf"^eval/{metric}@(\d+)$")
    return sorted(int(m.group(1)) for c in trials.columns if (m := pattern.match(c)))
