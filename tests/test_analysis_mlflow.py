"""The analysis on real training data: a tiny pool of real Neural GPU runs (neuralgpu.train.train), recorded in
a fresh sqlite MLflow store in the sweep orchestrator's layout (parent run, child runs tagged with trial_key,
stop_reason, params = the resolved config, metrics with `@` spelled `_at_`, result tables as eval/<name>.json,
checkpoint artifact), including a diverged, a crashed and an interrupted run. Then: loader, curves, re-judging,
recorded and re-run failure probes and the notebooks headless.
"""

from __future__ import annotations

import json
import math
import re
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from drivers import driver, finish
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

from analysis import failure, load, outcomes, rates, survival
from neuralgpu.config import TrainConfig
from neuralgpu.train import train
from seedcore.record import mlflow_key

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = "analysis-pool"
# A loose success rule (digit error < 0.3 at length 9) so that some of these 60-step runs succeed and some do not,
# confirmed on 16 fresh examples. success_length is not in eval_lengths, so the logged eval/digit_error@9 points
# are exactly the success tests (and confirm/digit_error@9 their confirmations).
BASE = dict(
    task="badd",
    max_length=7,
    start_length=4,
    max_steps=60,
    report_every=10,
    eval_every=10,
    advance_every=10,
    checkpoint_every=1000,
    eval_lengths=[11, 13],
    eval_batch=16,
    batch_size=16,
    success_metric="digit_error",
    success_threshold=0.3,
    success_length=9,
    success_gate=1.0,
    success_confirm=16,
    probes=True,  # carry chains 1, 2, 4 at length 11: milliseconds (the default goes to length 193)
    probe_carries=[1, 2, 4],
    probe_examples=8,
)
UNPROBED_SEED = 2
"""Runs of this seed train with probes off: they record no probe table, so the analysis probes their saved models."""


class Interrupted(Exception):
    """Stands for the driver being killed mid-trial."""


@dataclass
class Pool:
    uri: str
    experiment: str
    root: Path
    results: dict  # run_id -> TrainResult (or the exception's name)


def record_run(client, experiment_id, parent_id, index, values, mode, root):
    """Train one run for real and record it as the sweep orchestrator does (sweeps/tracking.py)."""
    cfg = TrainConfig.from_dict({**BASE, **values}, source="test pool")
    config = cfg.to_dict()
    tags = {
        "seedpool.role": "trial",
        "sweep": EXPERIMENT,
        "trial_key": f"key{index:02d}",
        "trainer": "neuralgpu",
        "mlflow.parentRunId": parent_id,
        **{k: str(config[k]) for k in ("seed", "width", "curriculum", "task")},
    }
    run_id = client.create_run(experiment_id, run_name=f"trial{index}", tags=tags).info.run_id
    params = [Param(k, json.dumps(v) if isinstance(v, list | tuple) else str(v)) for k, v in config.items()]
    for i in range(0, len(params), 100):
        client.log_batch(run_id, params=params[i : i + 100])
    reports = []

    def report(metrics, checkpoint):
        reports.append(metrics)
        now = int(time.time() * 1000)
        points = [Metric(mlflow_key(k), float(v), now, int(metrics["step"])) for k, v in metrics.items() if k != "step"]
        client.log_batch(run_id, metrics=points)
        # The length curriculum needs 30 steps to reach the success test, so these never end early on their own.
        if mode == "crash" and len(reports) == 2:
            raise RuntimeError("worker lost")
        if mode == "interrupt" and len(reports) == 1:
            raise Interrupted()

    checkpoint_dir = root / "checkpoints" / run_id
    try:
        result = train(cfg, report=report, checkpoint_dir=str(checkpoint_dir))
    except RuntimeError as exc:
        client.log_batch(run_id, tags=[RunTag("stop_reason", "error"), RunTag("error", str(exc))])
        client.set_terminated(run_id, "FAILED")
        return run_id, "crashed"
    except Interrupted:
        client.set_terminated(run_id, "KILLED")
        return run_id, "interrupted"
    final = {"success": float(result.success), "steps": result.steps, "wall_time_s": result.wall_time_s}
    if result.steps_to_success is not None:
        final["steps_to_success"] = result.steps_to_success
    now = int(time.time() * 1000)
    run_tags = [RunTag("stop_reason", result.stop_reason), RunTag("stopped_step", str(result.steps))]
    client.log_batch(run_id, metrics=[Metric(k, float(v), now, result.steps) for k, v in final.items()], tags=run_tags)
    for name, rows in result.to_dict().items():  # eval_table, probe_table: as sweeps/tracking.py finish_trial
        if name.endswith("_table") and rows:
            client.log_text(run_id, json.dumps(rows, indent=2, default=str), f"eval/{name}.json")
    client.log_artifacts(run_id, str(checkpoint_dir), "checkpoint")
    client.set_terminated(run_id, "FINISHED")
    return run_id, result


@pytest.fixture(scope="session")
def pool(tmp_path_factory) -> Pool:
    return build_pool(tmp_path_factory.mktemp("analysis_pool"))


def build_pool(root: Path) -> Pool:
    """15 real runs: 3 seeds x widths 4, 8 x curricula length, none (seed 2 without the failure probes), plus a
    diverged, a crashed and an interrupted run (about 20 s on one core)."""
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment_id = client.create_experiment(EXPERIMENT, artifact_location=(root / "artifacts").as_uri())
    parent = client.create_run(experiment_id, run_name="parent", tags={"seedpool.role": "parent", "sweep": EXPERIMENT})
    parent_id = parent.info.run_id
    client.log_batch(parent_id, params=[Param("science_axes", "width,curriculum"), Param("trials", "15")])
    plan = [
        ({"width": w, "curriculum": c, "seed": s, "probes": s != UNPROBED_SEED}, "normal")
        for s in range(3)
        for w in (4, 8)
        for c in ("length", "none")
    ]
    plan += [
        ({"width": 4, "curriculum": "length", "seed": 3, "lr": 1e30, "clip_norm": 1e30}, "normal"),  # diverges
        ({"width": 4, "curriculum": "length", "seed": 4}, "crash"),
        ({"width": 4, "curriculum": "length", "seed": 5}, "interrupt"),
    ]
    results = {}
    for index, (values, mode) in enumerate(plan):
        run_id, result = record_run(client, experiment_id, parent_id, index, values, mode, root)
        results[run_id] = result
    client.set_terminated(parent_id, "FINISHED")
    return Pool(uri=uri, experiment=EXPERIMENT, root=root, results=results)


def finished_results(pool: Pool) -> dict:
    return {k: v for k, v in pool.results.items() if not isinstance(v, str)}


# --- loading ---------------------------------------------------------------------------------------------------
def test_load_trials_has_one_row_per_trial_and_every_outcome(pool):
    trials = load.load_trials(pool.experiment, pool.uri)
    assert len(trials) == 15 == len(pool.results)
    assert set(trials["run_id"]) == set(pool.results)
    assert trials.attrs["science_axes"] == ["width", "curriculum"]
    assert trials["width"].dtype.kind == "i" and trials["seed"].dtype.kind == "i"
    counts = outcomes.outcome_counts(trials)
    assert counts["n_diverged"] == 1 and counts["n_crashed"] == 1 and counts["n_censored"] == 1
    assert counts["n_success"] + counts["n_failed"] == 12
    by_id = trials.set_index("run_id")
    for run_id, result in finished_results(pool).items():
        row = by_id.loc[run_id]
        assert bool(row["success"]) == result.success
        assert row["steps"] == result.steps
        assert row["wall_time_s"] == pytest.approx(result.wall_time_s)
        assert row["stop_reason"] == result.stop_reason
        if result.success:
            assert row["steps_to_success"] == result.steps_to_success == row["steps_to_event"]
        else:
            assert math.isnan(row["steps_to_success"]) and row["steps_to_event"] == result.steps
    crashed = trials[trials["outcome"] == "crashed"].iloc[0]
    assert crashed["steps"] == 20  # its last report before the crash, read from the time/wall_s curve
    assert crashed["mlflow_status"] == "FAILED" and crashed["stop_reason"] == "error"
    interrupted = trials[trials["outcome"] == "censored"].iloc[0]
    assert interrupted["mlflow_status"] == "KILLED" and interrupted["steps"] == 10
    assert set(trials["rule"]) == {"digit_error@9 < 0.3 confirmed on 16"}
    assert {"eval/seq_error@11", "eval/digit_error@13", "train/loss"} <= set(trials.columns)


def test_unknown_experiment_names_the_ones_that_exist(pool):
    with pytest.raises(ValueError, match=f"no MLflow experiment named 'nope'.*{EXPERIMENT}"):
        load.load_trials("nope", pool.uri)


def test_bulk_curves_equal_the_per_run_history(pool):
    trials = load.load_trials(pool.experiment, pool.uri)
    curves = load.load_curves(trials, ["eval/digit_error@9", "train/loss"])
    client = MlflowClient(pool.uri)
    for run_id in trials["run_id"]:
        for name in ("eval/digit_error@9", "train/loss"):
            expected = sorted((m.step, m.value) for m in client.get_metric_history(run_id, mlflow_key(name)))
            got = curves[(curves["run_id"] == run_id) & (curves["metric"] == name)]
            assert list(zip(got["step"], got["value"], strict=True)) == expected
    assert len(curves[curves["metric"] == "train/loss"]) > 15


# --- re-judging -------------------------------------------------------------------------------------------------
def test_rejudging_with_the_recorded_rule_reproduces_the_recorded_outcomes(pool):
    trials = load.load_trials(pool.experiment, pool.uri)
    curves = load.load_curves(trials, ["eval/digit_error@9", "confirm/digit_error@9", "time/wall_s"])
    recorded = outcomes.rule_from_params(trials.iloc[0].to_dict())
    assert recorded == outcomes.SuccessRule("digit_error", 0.3, 9, confirm=16)
    again = outcomes.rejudge(trials, curves, recorded)
    assert list(again["outcome"]) == list(trials["outcome"])
    assert np.array_equal(again["steps_to_success"].fillna(-1), trials["steps_to_success"].fillna(-1))
    assert 0 < again["success"].sum() < 12  # the pool holds both successes and failures
    # Every success had its confirmation logged at its step, and passed it.
    checks = curves[curves["metric"] == "confirm/digit_error@9"].set_index(["run_id", "step"])["value"]
    for row in again[again["success"]].itertuples():
        assert checks[(row.run_id, row.steps_to_success)] < 0.3


def test_a_stricter_rule_censors_runs_the_recorded_rule_stopped(pool):
    trials = load.load_trials(pool.experiment, pool.uri)
    curves = load.load_curves(trials, ["eval/digit_error@9", "time/wall_s"])
    strict = outcomes.rejudge(trials, curves, outcomes.SuccessRule("digit_error", 0.001, 9))
    assert strict["rule"].unique().tolist() == ["digit_error@9 < 0.001"]
    stopped = trials["stop_reason"] == "success"
    assert (strict.loc[stopped, "outcome"] == "censored").all() and not strict["success"].any()
    table = rates.rate_table(strict, [])
    assert table.loc[0, "n_runs"] == 15 and table.loc[0, "n_censored"] == 1 + stopped.sum()
    with pytest.raises(ValueError, match="logged no eval/seq_error@401"):
        outcomes.rejudge(trials, load.load_curves(trials, ["eval/seq_error@11"]), outcomes.SuccessRule(length=401))


def test_tables_keep_every_run(pool):
    trials = load.load_trials(pool.experiment, pool.uri)
    by = ["width", "curriculum"]
    for table in (
        rates.rate_table(trials, by),
        survival.km_table(trials, by),
        survival.compute_table(trials, by),
        outcomes.counts_table(trials, by),
    ):
        assert table["n_runs"].sum() == 15
        assert (table[list(outcomes.COUNT_COLUMNS)].sum(axis=1) == table["n_runs"]).all()
        assert set(table["rule"]) == {"digit_error@9 < 0.3 confirmed on 16"}


# --- failure modes: recorded probe tables, saved models -----------------------------------------------------------
def recorded_probes(pool: Pool) -> dict[str, list[dict]]:
    """run_id -> the probe table the trainer returned, for the runs that ran the probes."""
    return {k: v.probe_table for k, v in finished_results(pool).items() if v.probe_table}


def test_recorded_probe_tables_read_back_exactly(pool):
    trials = load.load_trials(pool.experiment, pool.uri)
    recorded = recorded_probes(pool)
    assert len(recorded) == 8  # seeds 0 and 1 in 4 cells; seed 2 trained without probes, the diverged run skips them
    tables = load.load_run_tables(trials, "probe_table")
    assert set(tables["run_id"]) == set(recorded)
    for run_id, rows in recorded.items():
        got = tables[tables["run_id"] == run_id].drop(columns="run_id").to_dict("records")
        assert [{k: v for k, v in row.items() if not pd.isna(v)} for row in got] == rows
        assert [r["carry"] for r in rows if r["probe"] == "carry_chain"] == [1, 2, 4]
        assert {r["probe"] for r in rows} == {"carry_chain", "equal_stretch", "random", "structured"}


def test_probe_tables_read_the_records_and_probe_only_unrecorded_models(pool, tmp_path):
    trials = load.load_trials(pool.experiment, pool.uri)
    probes = failure.probe_tables(trials, ["width", "curriculum"], tmp_path, np.random.default_rng(0), rerun_max=3)
    runs = probes["runs"].set_index("run_id")
    assert len(runs) == 15
    recorded = recorded_probes(pool)
    assert (runs.loc[list(recorded), "source"] == "recorded").all()
    unprobed = trials[(trials["seed"] == UNPROBED_SEED) & trials["outcome"].isin(failure.MODEL_OUTCOMES)]
    assert len(unprobed) == 4
    sources = runs.loc[unprobed["run_id"], "source"]
    assert sorted(sources) == ["none (not re-run: rerun_max=3)", "re-run", "re-run", "re-run"]
    skipped = unprobed.set_index("run_id").loc[sources.index[sources != "re-run"][0]]
    rerun = unprobed.set_index("run_id").loc[sources.index[sources == "re-run"]]
    assert skipped["outcome"] != "success" or rerun["outcome"].eq("success").all()  # successful runs first
    for outcome in ("diverged", "crashed", "censored"):
        run_id = trials.loc[trials["outcome"] == outcome, "run_id"].iloc[0]
        assert runs.loc[run_id, "source"] == f"none ({outcome}: no model)" and runs.loc[run_id, "probe_rows"] == 0
    # 3 carry chains, 2 equal stretches at length 9 (success_length), random and structured: recorded or re-run.
    assert (runs.loc[runs["source"].isin(["recorded", "re-run"]), "probe_rows"] == 7).all()

    carries = probes["carries"]
    for run_id, rows in recorded.items():  # the recorded numbers come through unchanged
        got = carries[carries["run_id"] == run_id]
        assert list(zip(got["carry"], got["seq_error"], strict=True)) == [
            (r["carry"], r["seq_error"]) for r in rows if r["probe"] == "carry_chain"
        ]
        assert (got["source"] == "recorded").all() and (got["length"] == 11).all()
    again = carries[carries["source"] == "re-run"]
    assert sorted(set(again["run_id"])) == sorted(rerun.index) and list(again["carry"]) == [1, 2, 4] * 3
    assert (again["examples"] == 8).all() and again["seq_error"].between(0, 1).all()
    by_id = trials.set_index("run_id")
    assert (carries["width"] == by_id.loc[carries["run_id"], "width"].to_numpy()).all()

    stretches = probes["stretches"]
    assert len(stretches) == 2 * 11
    assert set(stretches["input"]) == {"0010 + 0001", "0010 + 0010"}  # 2 + 1 and 2 + 2, 4-bit operands at length 9
    assert {int(e, 2) for e in stretches["expected"]} == {3, 4}
    assert (~stretches["correct"] | (stretches["model"] == stretches["expected"])).all()
    side = failure.structured_against_random(probes["structured"])
    assert len(side) == 11 and side[["seq_error_random", "seq_error_structured"]].stack().between(0, 1).all()


def test_a_saved_model_answers_its_recorded_equal_stretch_probes_again(pool, tmp_path):
    trials = load.load_trials(pool.experiment, pool.uri)
    recorded = recorded_probes(pool)
    run_id = trials.loc[trials["run_id"].isin(list(recorded)) & (trials["outcome"] == "success"), "run_id"].iloc[0]
    path = failure.download_checkpoint(run_id, tmp_path, pool.uri)
    cfg, rows = failure.probe_saved_model(path, np.random.default_rng(0))
    assert cfg.width == trials.set_index("run_id").loc[run_id, "width"]
    # The stretch inputs are fixed, so the model rebuilt from its checkpoint must give the trainer's answers.
    stretch = [r for r in rows if r["probe"] == "equal_stretch"]
    assert stretch == [r for r in recorded[run_id] if r["probe"] == "equal_stretch"] and len(stretch) == 2
    shape = [(r["probe"], r.get("carry"), r["length"], r.get("examples")) for r in rows]
    assert shape == [(r["probe"], r.get("carry"), r["length"], r.get("examples")) for r in recorded[run_id]]
    crashed = trials.loc[trials["outcome"] == "crashed", "run_id"].iloc[0]
    assert failure.download_checkpoint(crashed, tmp_path, pool.uri) is None


# --- notebooks and the report ----------------------------------------------------------------------------------
def test_report_runs_every_notebook_headless(pool, tmp_path):
    from analysis.report import run_report

    names = ["overview", "nondeterminism", "big_models_curriculum", "failure_modes", "rl_tasks"]
    pages = run_report(pool.experiment, pool.uri, tmp_path, names)
    assert [p.name for p in pages] == [f"{n}.html" for n in names]
    assert (tmp_path / "index.html").is_file()
    figures = {p.stem for p in (tmp_path / "figures").glob("*.png")}
    assert {
        "nondeterminism_rates",
        "nondeterminism_km_steps",
        "nondeterminism_compute_steps",
        "big_models_rate_vs_width",
        "failure_error_vs_length",
        "failure_carries",
        "rl_solved",
    } <= figures
    assert all(p.stat().st_size > 10_000 for p in (tmp_path / "figures").glob("*.png"))
    for name in names:
        table = pd.read_csv(tmp_path / "tables" / f"{name}_trials.csv")
        assert len(table) == 15 and table["run_id"].is_unique
        page = (tmp_path / f"{name}.html").read_text()
        assert "data:image/png;base64" in page and 'class="error"' not in page
        text = re.sub(r"data:image/png;base64,[^\"]+", "", page)  # what a reader sees: no warnings, no folders
        for word in ("Warning", "/tmp", "/work", "site-packages", str(ROOT)):
            assert word not in text, f"{name}: {word!r} in {text[max(0, text.find(word) - 200) :][:500]}"
    rates_table = pd.read_csv(tmp_path / "tables" / "nondeterminism_rates.csv")
    assert rates_table["n_runs"].sum() == 15 and len(rates_table) == 4
    runs = pd.read_csv(tmp_path / "tables" / "failure_probes_runs.csv")  # rerun_max=4: every unprobed model
    assert len(runs) == 15 and runs["source"].value_counts()[["recorded", "re-run"]].tolist() == [8, 4]
    carries = pd.read_csv(tmp_path / "tables" / "failure_carries_by_cell.csv")
    assert len(carries) == 4 * 3 and (carries["n_runs"] == 3).all()  # 4 cells x carries 1, 2, 4; 3 seeds each
    assert len(pd.read_csv(tmp_path / "tables" / "failure_probes_stretches.csv")) == 12 * 2
    assert len(pd.read_csv(tmp_path / "tables" / "failure_structured_vs_random.csv")) == 12


def test_report_command_line_names_a_missing_experiment(pool, tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "analysis.report", "nope", "--tracking-uri", pool.uri, "--output-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1 and "no MLflow experiment named 'nope'" in done.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_loader_reads_the_same_through_a_tracking_server(pool):
    port = _free_port()
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mlflow"),
            "server",
            "--backend-store-uri",
            pool.uri,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        uri = f"http://127.0.0.1:{port}"
        for _ in range(120):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.5)
        local = load.load_trials(pool.experiment, pool.uri)
        remote = load.load_trials(pool.experiment, uri)
        columns = ["run_id", "outcome", "steps", "width", "seed", "rule"]
        key = ["run_id"]
        pd.testing.assert_frame_equal(
            local[columns].sort_values(key, ignore_index=True), remote[columns].sort_values(key, ignore_index=True)
        )
        local_curves = load.load_curves(local, ["train/loss"])
        remote_curves = load.load_curves(remote, ["train/loss"], tracking_uri=uri)
        pd.testing.assert_frame_equal(local_curves.drop(columns="timestamp"), remote_curves.drop(columns="timestamp"))
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.slow
def test_report_on_a_real_tiny_sweep(tmp_path, ray_cluster):
    """The orchestrator's own tiny sweep (Ray Tune + MLflow, on the tests' Ray cluster), then
    `python -m analysis.report` on it."""
    config = tmp_path / "tiny.yaml"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    text = (ROOT / "sweeps" / "configs" / "tiny.yaml").read_text()
    config.write_text(text + f'\ntracking: {{uri: "{uri}", storage: {tmp_path / "ray"}}}\n')
    proc = driver(config, ray_cluster)
    sweep = finish(proc, 600)
    assert proc.returncode == 0 and "Traceback" not in sweep, sweep[-3000:]
    out = tmp_path / "report"
    done = subprocess.run(
        [sys.executable, "-m", "analysis.report", "tiny", "--tracking-uri", uri, "--output-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    trials = pd.read_csv(out / "tables" / "nondeterminism_trials.csv")
    assert len(trials) == 4 and (out / "figures" / "nondeterminism_rates.png").is_file()
