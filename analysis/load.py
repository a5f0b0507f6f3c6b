"""Read a sweep from MLflow: one tidy row per trial, and metric curves in long form.

Layout written by the sweep orchestrator (read, never imported: analysis does not depend on sweeps), in the record's
vocabulary (seedcore.record, which both import): one experiment per sweep name; a parent run per invocation (tag
seedpool.role=parent, no mlflow.parentRunId); a child run per trial (seedpool.role=trial, mlflow.parentRunId,
trial_key, sweep, stop_reason, axes, and one tag per axis field: seed, width, ...) whose params are the resolved
training config and whose metrics are the trainer's, with `@` spelled `_at_` because MLflow forbids `@`
(eval/seq_error@201 is stored as eval/seq_error_at_201). This module turns the names back into the trainer's
spelling (trainer_key). A finished trial also holds the trainer's result tables as artifacts eval/<name>.json (and
.csv): eval_table (error per test length) and probe_table (the failure probes of neuralgpu.probes), one JSON list of
row dicts each; load_run_tables reads them. An adaptive pool's parent runs hold its looks (LOOKS_ARTIFACT);
load_looks reads them.

The trials table is one `search_runs` request (paged by MLflow), never one request per run; curves come from
one query per metric on a SQL store, 100 runs per request on a tracking server.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import warnings
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# In a notebook kernel, tqdm.auto (imported by mlflow) warns that ipywidgets is missing and falls back to plain
# text bars: harmless, and the report would print it on every page. So would MLflow's bar for every artifact read
# (result tables, looks, checkpoints: small files); set MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR=true to see them.
warnings.filterwarnings("ignore", message="IProgress not found")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

import mlflow  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from mlflow import MlflowClient  # noqa: E402

from analysis.outcomes import classify_outcome, rule_from_params  # noqa: E402
from seedcore.record import (  # noqa: E402
    AXES_TAG,
    CONFIG_TAGS,
    KEY_TAG,
    LOOKS_ARTIFACT,
    NEURALGPU,
    PARENT_TAG,
    ROLE_PARENT,
    ROLE_TAG,
    RUN_NAME_TAG,
    STEP_UNITS,
    STOP_REASON_TAG,
    STOPPED_STEP_TAG,
    SWEEP_TAG,
    TRAINER_TAG,
    mlflow_key,
    trainer_key,
)

OUTCOME_COLUMNS = (
    "success",
    "steps_to_success",
    "stop_reason",
    "outcome",
    "steps",
    "wall_time_s",
    "steps_to_event",
    "wall_to_event_s",
    "rule",
)
KNOWN_AXES = ("task", "model", "width", "curriculum", "learner", "trainer")
"""Columns that are science axes when they take more than one value in a pool."""


class UnidentifiedRunsWarning(UserWarning):
    """load_trials found runs that carry no identity (no params, no identifying tags): they belong to no cell."""


@contextlib.contextmanager
def _tracking(uri: str | None) -> Iterator[str]:
    """Point the fluent API at `uri` for the duration (search_runs has no uri argument)."""
    previous = mlflow.get_tracking_uri()
    if uri:
        mlflow.set_tracking_uri(uri)
    try:
        yield mlflow.get_tracking_uri()
    finally:
        mlflow.set_tracking_uri(previous)


def _check_store(uri: str) -> None:
    """A sqlite URI whose file is missing would be created empty by MLflow: say what is wrong instead."""
    if uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///"))
        if not path.is_file():
            raise ValueError(
                f"no MLflow database at {path} (tracking URI {uri}); run a sweep first (make sweep) or pass the "
                "URI it recorded into (absolute: sqlite:////abs/path/mlflow.db)."
            )


def _coerce_param(value: object) -> object:
    """MLflow params are strings: give back ints, floats, bools, lists and None where they parse."""
    if not isinstance(value, str):
        return value
    if value in ("True", "False"):
        return value == "True"
    if value == "None":
        return None
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    if value.startswith("["):
        try:
            return tuple(json.loads(value))
        except json.JSONDecodeError:
            pass
    return value


def _column(frame: pd.DataFrame, name: str, default: object = math.nan) -> pd.Series:
    return frame[name] if name in frame else pd.Series(default, index=frame.index, dtype=object)


def load_trials(experiment: str, tracking_uri: str | None = None) -> pd.DataFrame:
    """One row per trial run of an MLflow experiment (a sweep name), parent runs left out.

    Columns: run_id, run_name, experiment, sweep, trial_key, parent_run_id, mlflow_status, trainer, step_unit
    ('steps', or 'episodes' for RL), every training-config param as its own column with its type (width, task,
    curriculum, seed, success_threshold, ...; a param that clashes with an outcome column is kept as params.<name>;
    a run without params takes its identifying tags of the same names), `identity` (where those came from: "params",
    "tags", or "none" for a run that names no cell, reported with UnidentifiedRunsWarning and counted as `unplaced`
    in every table), `duplicate_trial_key`, the outcome columns (OUTCOME_COLUMNS: success, steps_to_success,
    stop_reason, outcome, steps and wall_time_s spent, steps_to_event and wall_to_event_s for time-to-success
    analyses, and `rule`, the success rule the run recorded) and the last value of every namespaced metric
    (eval/seq_error@201, ...).

    attrs: experiment, tracking_uri, science_axes (from the newest parent run, else the known axes that vary).
    Raises ValueError naming the experiments that exist when `experiment` does not.
    """
    _check_store(tracking_uri or mlflow.get_tracking_uri())
    with _tracking(tracking_uri) as uri:
        client = MlflowClient(uri)
        found = _experiment(client, experiment, uri)
        runs = mlflow.search_runs(experiment_ids=[found.experiment_id], output_format="pandas", max_results=10**6)
        if runs.empty:
            trials = pd.DataFrame(columns=["run_id", *OUTCOME_COLUMNS])
            trials.attrs.update(experiment=experiment, tracking_uri=uri, science_axes=[])
            return trials
        role = _column(runs, f"tags.{ROLE_TAG}", None)
        parent_ids = set(_column(runs, f"tags.{PARENT_TAG}", None).dropna())
        is_parent = (role == ROLE_PARENT) | (role.isna() & runs["run_id"].isin(parent_ids))
        parents, runs = runs[is_parent], runs[~is_parent].reset_index(drop=True)
        trials = _tidy(runs, experiment)
        _fill_unfinished_spend(trials, runs, client)
    trials.attrs.update(experiment=experiment, tracking_uri=uri, science_axes=_science_axes(trials, parents))
    return trials


def _experiment(client: MlflowClient, experiment: str, uri: str):
    """The MLflow experiment named `experiment`; a ValueError naming the ones that exist when there is none."""
    found = client.get_experiment_by_name(experiment)
    if found is None:
        names = sorted(e.name for e in client.search_experiments())
        raise ValueError(
            f"no MLflow experiment named {experiment!r} at {uri}; experiments there: "
            f"{', '.join(names) or 'none'}. Pass the sweep name (the experiment) and the tracking URI it "
            "was recorded in (MLFLOW_TRACKING_URI)."
        )
    return found


LOOK_COLUMNS = ("look", "question", "kind", "cells", "counts", "low", "high", "decided", "reason", "seeds_added")


def load_looks(experiment: str, tracking_uri: str | None = None) -> pd.DataFrame:
    """The looks of an adaptive pool, one row per decision per look (empty, with the columns, for a pool that
    took none).

    Columns (LOOK_COLUMNS): look (1 after min_seeds), question (its number in the sweep's adaptive.questions,
    from 1), kind ("half-width" or "difference"), cells (a cell label, or "a vs b"), counts (successes/trials of
    each: "3/4" or "3/4 vs 1/4"), low and high (the cell's anytime-valid interval at the pool's alpha, or the
    difference's, a minus b), decided, reason (the orchestrator's one line), seeds_added (seeds added after that
    look to the decision's cells together; 0 once decided or at the end of the seed axis).

    Read from the artifact LOOKS_ARTIFACT of the experiment's parent runs. Every invocation records the looks
    from the first one on (they are replayed from the record), so the newest parent run holding it has them all.
    attrs: experiment, parent_run_id (the run read, None without looks).
    """
    _check_store(tracking_uri or mlflow.get_tracking_uri())
    with _tracking(tracking_uri) as uri:
        client = MlflowClient(uri)
        found = _experiment(client, experiment, uri)
        parents = client.search_runs(
            [found.experiment_id],
            filter_string=f"tags.`{ROLE_TAG}` = '{ROLE_PARENT}'",
            order_by=["attributes.start_time DESC"],
        )
        folder = LOOKS_ARTIFACT.rsplit("/", 1)[0]
        holder = next(
            (
                run
                for run in parents
                if LOOKS_ARTIFACT in {f.path for f in client.list_artifacts(run.info.run_id, folder)}
            ),
            None,
        )
        looks = []
        if holder is not None:
            with tempfile.TemporaryDirectory(prefix="seedpool-looks-") as directory:
                path = client.download_artifacts(holder.info.run_id, LOOKS_ARTIFACT, directory)
                looks = json.loads(Path(path).read_text())
    table = pd.DataFrame([row for look in looks for row in _look_rows(look)], columns=list(LOOK_COLUMNS))
    table.attrs.update(experiment=experiment, parent_run_id=holder.info.run_id if holder else None)
    return table


def _look_rows(look: dict) -> list[dict]:
    """One look of sweeps.adaptive (its Look.as_dict) as LOOK_COLUMNS rows, one per decision."""
    rows = []
    for decision in look["decisions"]:
        cells = decision["cells"]
        counts = [look["cells"][label] for label in cells]
        if len(cells) == 1:
            kind, low, high = "half-width", counts[0]["low"], counts[0]["high"]
        else:
            kind, low, high = "difference", decision["difference_low"], decision["difference_high"]
        rows.append(
            {
                "look": look["number"],
                "question": decision["question"] + 1,
                "kind": kind,
                "cells": " vs ".join(cells),
                "counts": " vs ".join(f"{c['successes']}/{c['trials']}" for c in counts),
                "low": float(low),
                "high": float(high),
                "decided": bool(decision["decided"]),
                "reason": decision["why"],
                "seeds_added": sum(look["added"].get(label, 0) for label in cells),
            }
        )
    return rows


def _tidy(runs: pd.DataFrame, experiment: str) -> pd.DataFrame:
    out = pd.DataFrame(
        {
            "run_id": runs["run_id"],
            "run_name": _column(runs, f"tags.{RUN_NAME_TAG}", None),
            "experiment": experiment,
            "sweep": _column(runs, f"tags.{SWEEP_TAG}", experiment).fillna(experiment),
            "trial_key": _column(runs, f"tags.{KEY_TAG}", None),
            "parent_run_id": _column(runs, f"tags.{PARENT_TAG}", None),
            "mlflow_status": runs["status"],
        }
    )
    trainer = _column(runs, f"tags.{TRAINER_TAG}", None).fillna(_column(runs, "params.trainer", None))
    out["trainer"] = trainer.fillna(NEURALGPU)
    out["step_unit"] = [STEP_UNITS.get(name, STEP_UNITS[NEURALGPU]) for name in out["trainer"]]
    _config_columns(out, runs)

    metric = {c.removeprefix("metrics."): runs[c] for c in runs.columns if c.startswith("metrics.")}
    nan = pd.Series(math.nan, index=runs.index)
    success = metric.get("success", nan).fillna(0) >= 1
    out["success"] = success
    out["steps_to_success"] = metric.get("steps_to_success", nan).where(success)
    stop_reason = _column(runs, f"tags.{STOP_REASON_TAG}", None)
    out["stop_reason"] = stop_reason.where(stop_reason.notna(), None)
    out["outcome"] = [
        classify_outcome(status, reason, bool(ok))
        for status, reason, ok in zip(out["mlflow_status"], out["stop_reason"], out["success"], strict=True)
    ]
    stopped = pd.to_numeric(_column(runs, f"tags.{STOPPED_STEP_TAG}"), errors="coerce")
    out["steps"] = metric.get("steps", nan).fillna(stopped)
    out["wall_time_s"] = metric.get("wall_time_s", nan).fillna(metric.get("time/wall_s", nan))
    out["rule"] = [_rule_label(row) for row in out.to_dict("records")]
    # The orchestrator records a trial once (found again by its key); a doubled key is shown, never dropped.
    out["duplicate_trial_key"] = out["trial_key"].notna() & out["trial_key"].duplicated(keep=False)
    for name, values in sorted(metric.items()):
        if "/" in name and not values.isna().all():
            out[trainer_key(name)] = values
    _event_columns(out)
    _report_unidentified(out, experiment)
    return out


def _config_columns(out: pd.DataFrame, runs: pd.DataFrame) -> None:
    """Every run-config field as its own column, run by run: the param where the run logged it, else the tag of
    the same name among the run's identifying tags (its `axes` tag's fields and its trainer's CONFIG_TAGS), which
    the recorder sets when it creates the run. A run that crashed between creation and logging its params, or
    that a rerun reopened without them, keeps its cell. Sets `identity`: "params", "tags" or "none" (neither)."""
    params = {c.removeprefix("params."): c for c in runs.columns if c.startswith("params.")}
    has_params = runs[list(params.values())].notna().any(axis=1) if params else pd.Series(False, index=runs.index)
    axes = _column(runs, f"tags.{AXES_TAG}", None)
    identifying = [_identifying_fields(listed, trainer) for listed, trainer in zip(axes, out["trainer"], strict=True)]
    tagged = {field for fields in identifying for field in fields if f"tags.{field}" in runs}
    # A param no trial run holds belongs to the parent runs (search_runs gives every run every column).
    names = {name for name, column in params.items() if runs[column].notna().any()} | tagged
    has_tags = pd.Series(False, index=runs.index)
    for name in sorted(names):
        values = runs[params[name]] if name in params else pd.Series(math.nan, index=runs.index, dtype=object)
        if name in tagged:
            usable = pd.Series([name in fields for fields in identifying], index=runs.index)
            from_tag = runs[f"tags.{name}"].where(usable)
            has_tags |= from_tag.notna()
            values = values.where(values.notna(), from_tag)
        target = f"params.{name}" if name in OUTCOME_COLUMNS or name in out else name
        out[target] = values.map(_coerce_param)
    out["identity"] = np.where(has_params, "params", np.where(has_tags, "tags", "none"))


def _identifying_fields(axes: object, trainer: str) -> set[str]:
    """The fields whose tags identify a run: its `axes` tag's list (runs created since that tag) and its trainer's
    CONFIG_TAGS (every run the recorder created)."""
    listed = [name for name in axes.split(",") if name] if isinstance(axes, str) else []
    return {*listed, *CONFIG_TAGS.get(trainer, ())}


def _report_unidentified(trials: pd.DataFrame, experiment: str) -> None:
    """A run with neither params nor identifying tags belongs to no cell: keep it (identity "none"; every table
    counts it as `unplaced`, analysis.outcomes.grouped) and say which runs they are."""
    lost = trials.loc[trials["identity"] == "none", "run_id"].tolist()
    if lost:
        shown = ", ".join(lost[:10]) + (f" and {len(lost) - 10} more" if len(lost) > 10 else "")
        warnings.warn(
            f"{len(lost)} run(s) of experiment {experiment!r} carry no identity (no params, no axis or config tags): "
            f"{shown}. They are kept with identity='none' and counted as 'unplaced' in every table, never in a cell. "
            "A trial whose run was created without its tags (an interrupted recorder) is re-identified by the next "
            "`sweeps run` of the sweep; a run that is not a trial of this sweep belongs in another experiment.",
            UnidentifiedRunsWarning,
            stacklevel=4,
        )


def _event_columns(trials: pd.DataFrame) -> None:
    """Durations for time-to-success: to the success, or to the end of a run that never succeeded (censored).
    A run that stopped at its success spent its wall time getting there; otherwise the wall time at success is
    not in the final metrics and the run's total is used (an upper bound; rejudge reads it from the curve)."""
    trials["steps_to_event"] = np.where(trials["success"], trials["steps_to_success"], trials["steps"])
    trials["wall_to_event_s"] = trials["wall_time_s"]


def _rule_label(row: dict) -> str:
    rule = rule_from_params(row)
    return rule.describe() if rule is not None else f"recorded success ({row.get('trainer')})"


def _fill_unfinished_spend(trials: pd.DataFrame, runs: pd.DataFrame, client: MlflowClient) -> None:
    """Steps and wall time of runs without final metrics (crashed or interrupted): the last report of
    time/wall_s, one request per such run (there are few). A run that never reported spent 0."""
    missing = trials.index[trials["steps"].isna()]
    for index in missing:
        history = client.get_metric_history(trials.at[index, "run_id"], "time/wall_s")
        if history:
            last = max(history, key=lambda m: m.step)
            trials.at[index, "steps"] = float(last.step)
            if math.isnan(trials.at[index, "wall_time_s"]):
                trials.at[index, "wall_time_s"] = float(last.value)
    trials["steps"] = trials["steps"].fillna(0.0)
    trials["wall_time_s"] = trials["wall_time_s"].fillna(0.0)
    _event_columns(trials)


def _science_axes(trials: pd.DataFrame, parents: pd.DataFrame) -> list[str]:
    """The parent run's declared science axes (params.science_axes, newest parent first), else the known axes
    that take more than one value."""
    if "params.science_axes" in parents and len(parents):
        newest = parents.sort_values("start_time", ascending=False)["params.science_axes"].dropna()
        if len(newest) and newest.iloc[0] not in ("-", ""):
            return [a for a in str(newest.iloc[0]).split(",") if a in trials]
    return [a for a in KNOWN_AXES if a in trials and trials[a].astype(str).nunique() > 1]


def metric_keys(trials: pd.DataFrame) -> list[str]:
    """The namespaced metrics (trainer spelling) that the trials frame holds final values of."""
    return [c for c in trials.columns if "/" in c and not c.startswith("params.")]


def load_curves(
    runs: pd.DataFrame | Iterable[str],
    metrics: Iterable[str] | None = None,
    tracking_uri: str | None = None,
    chunk: int = 100,
) -> pd.DataFrame:
    """Metric curves in long form: run_id, metric (trainer spelling), step, value, timestamp; sorted by run,
    metric and step.

    runs: a trials frame (load_trials) or run ids. metrics: trainer or MLflow spellings; default every
    namespaced metric of the trials frame. A SQL store (sqlite, postgres) answers one query per metric and
    `chunk` runs; a tracking server answers its bulk endpoint, 100 runs per request; any other store falls back
    to one request per run and metric, 8 at a time.
    """
    if isinstance(runs, pd.DataFrame):
        run_ids = runs["run_id"].tolist()
        uri = tracking_uri or runs.attrs.get("tracking_uri")
        if metrics is None:
            metrics = metric_keys(runs)
    else:
        run_ids, uri = list(runs), tracking_uri
    if metrics is None:
        raise ValueError("load_curves needs `metrics` when given run ids (or pass the trials frame)")
    keys = list(dict.fromkeys(mlflow_key(m) for m in metrics))
    with _tracking(uri) as uri:
        client = MlflowClient(uri)
        store = client._tracking_client.store  # noqa: SLF001  (the only way to reach the bulk queries)
        rows: list[tuple] = []
        for key in keys:
            for start in range(0, len(run_ids), chunk):
                part = run_ids[start : start + chunk]
                rows.extend(_history(client, store, part, key))
    frame = pd.DataFrame(rows, columns=["run_id", "metric", "step", "value", "timestamp"])
    frame["metric"] = frame["metric"].map(trainer_key)
    return frame.sort_values(["run_id", "metric", "step", "timestamp"], ignore_index=True)


def _history(client: MlflowClient, store: object, run_ids: list[str], key: str) -> list[tuple]:
    if hasattr(store, "get_metric_history_bulk"):  # SqlAlchemyStore: one query for all these runs
        found = store.get_metric_history_bulk(run_ids, key, max_results=None)
        return [(m.run_id, key, m.step, m.value, m.timestamp) for m in found]
    if hasattr(store, "get_host_creds"):  # RestStore: the server's bulk endpoint (the MLflow UI uses it)
        rows = _rest_bulk(store, run_ids, key)
        if rows is not None:
            return rows

    def one(run_id: str) -> list[tuple]:
        return [(run_id, key, m.step, m.value, m.timestamp) for m in client.get_metric_history(run_id, key)]

    with ThreadPoolExecutor(max_workers=8) as pool:
        return [row for part in pool.map(one, run_ids) for row in part]


def load_run_tables(
    runs: pd.DataFrame | Iterable[str], name: str, tracking_uri: str | None = None, workers: int = 8
) -> pd.DataFrame:
    """The rows of one result table that each run recorded (artifact eval/<name>.json, written when the trial
    finished; name: the TrainResult field, e.g. "probe_table" or "eval_table"), in long form: run_id, then the
    table's own columns. A run that recorded no such table (crashed, interrupted, diverged, or the table was
    empty) has no rows. runs: a trials frame (load_trials) or run ids; `workers` runs are read at a time."""
    if isinstance(runs, pd.DataFrame):
        run_ids, uri = runs["run_id"].tolist(), tracking_uri or runs.attrs.get("tracking_uri")
    else:
        run_ids, uri = list(runs), tracking_uri
    artifact = f"eval/{name}.json"
    client = MlflowClient(uri)

    def one(run_id: str) -> list[dict]:
        # Listing first tells "not recorded" apart from a failing download, which is raised.
        if artifact not in {f.path for f in client.list_artifacts(run_id, "eval")}:
            return []
        with tempfile.TemporaryDirectory(prefix="seedpool-table-") as folder:
            rows = json.loads(Path(client.download_artifacts(run_id, artifact, folder)).read_text())
        return [{"run_id": run_id, **row} for row in rows]

    with ThreadPoolExecutor(max_workers=workers) as pool:
        rows = [row for part in pool.map(one, run_ids) for row in part]
    return pd.DataFrame(rows) if rows else pd.DataFrame(columns=["run_id"])


REST_BULK_LIMIT = 25000
"""The server's cap on points per bulk request: a full answer may be cut, so it is split and asked again."""


def _rest_bulk(store: object, run_ids: list[str], key: str) -> list[tuple] | None:
    """GET /ajax-api/2.0/mlflow/metrics/get-history-bulk for up to 100 runs; None when the server lacks it."""
    from mlflow.exceptions import MlflowException
    from mlflow.utils.rest_utils import http_request

    try:
        response = http_request(
            store.get_host_creds(),
            "/ajax-api/2.0/mlflow/metrics/get-history-bulk",
            "GET",
            params={"run_id": run_ids, "metric_key": key, "max_results": REST_BULK_LIMIT},
        )
    except MlflowException:
        return None
    if response.status_code != 200:
        return None
    points = response.json().get("metrics", [])
    if len(points) >= REST_BULK_LIMIT:
        if len(run_ids) == 1:
            return None  # one run with more points than the cap: the paged per-run request reads them all
        middle = len(run_ids) // 2
        left, right = _rest_bulk(store, run_ids[:middle], key), _rest_bulk(store, run_ids[middle:], key)
        return None if left is None or right is None else left + right
    return [(p["run_id"], key, int(p.get("step", 0)), float(p["value"]), int(p.get("timestamp", 0))) for p in points]
