"""The tracking store goes away mid-sweep: a real `mlflow server` on a loopback port is stopped while real trials
train on the shared Ray cluster. Nothing is lost or doubled, whatever the outage's length: a short one is bridged
by the journal while the sweep runs; a long one outlasts the sweep, which ends cleanly (exit 75) and leaves its
writes in the journal for the next run. Read back with MLflow's own client only."""

from __future__ import annotations

import time

import pytest
from drivers import driver, wait_for
from mlflow import MlflowClient

STEPS, REPORT_EVERY = 800, 10
EXIT_STORE_AWAY = 75


def trial_runs(uri: str) -> list:
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("tiny")
    if experiment is None:
        return []
    return list(client.search_runs([experiment.experiment_id], "tags.`seedpool.role` = 'trial'"))


def assert_every_point_once(uri: str, output: str) -> None:
    """Four FINISHED runs, each with every report's points exactly once and one verdict per report."""
    client = MlflowClient(tracking_uri=uri)
    runs = trial_runs(uri)
    assert len(runs) == 4 and {r.info.status for r in runs} == {"FINISHED"}, output
    schedule = list(range(REPORT_EVERY, STEPS + 1, REPORT_EVERY))
    for run in runs:
        for name in ("train/loss", "success", "curriculum/length"):
            steps = [m.step for m in client.get_metric_history(run.info.run_id, name)]
            assert sorted(steps) == schedule, f"{run.info.run_name} {name}: {sorted(steps)}\n{output}"


def outage_sweep(make_sweep, tmp_path, server):
    path = make_sweep(
        budget={"steps": STEPS},  # ~7 s per trial here: the outage falls inside the pool
        tracking={"uri": server.uri, "storage": str(tmp_path / "storage")},
    )
    return path, tmp_path / "storage" / "tiny" / "journal"


def started_training(uri: str) -> bool:
    runs = trial_runs(uri)
    return bool(runs) and bool(MlflowClient(tracking_uri=uri).get_metric_history(runs[0].info.run_id, "train/loss"))


@pytest.mark.slow
def test_a_12_s_outage_is_bridged_while_the_sweep_runs(make_sweep, tmp_path, mlflow_server, ray_cluster):
    path, journal = outage_sweep(make_sweep, tmp_path, mlflow_server)
    proc = driver(path, ray_cluster, "--max-concurrent", "1")
    wait_for(lambda: started_training(mlflow_server.uri), 240, proc)
    mlflow_server.stop()
    time.sleep(12)  # of the ~28 s the four trials take one after another: the store is back before they end
    mlflow_server.start()
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, output
    assert "is not answering" in output and "the MLflow store is back after" in output, output
    assert "Traceback" not in output, output
    assert_every_point_once(mlflow_server.uri, output)
    assert not list(journal.glob("*.jsonl")), "a run that sent everything leaves no journal"


@pytest.mark.parametrize(
    "outage_s",
    [
        pytest.param(20, marks=pytest.mark.slow, id="20s"),
        pytest.param(300, marks=pytest.mark.bench, id="5min"),  # `make test-faults`: 8 minutes here
    ],
)
def test_an_outage_that_outlasts_the_sweep_is_sent_by_the_next_run(
    make_sweep, tmp_path, mlflow_server, ray_cluster, outage_s
):
    path, journal = outage_sweep(make_sweep, tmp_path, mlflow_server)
    proc = driver(path, ray_cluster, "--max-concurrent", "2")
    wait_for(lambda: started_training(mlflow_server.uri), 240, proc)
    mlflow_server.stop()
    away_since = time.monotonic()
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode == EXIT_STORE_AWAY, output
    assert "Nothing is lost" in output and "Traceback" not in output, output
    assert len(list(journal.glob("*.jsonl"))) == 1, output
    time.sleep(max(0.0, outage_s - (time.monotonic() - away_since)))
    mlflow_server.start()
    again = driver(path, ray_cluster, "--max-concurrent", "2")
    resumed, _ = again.communicate(timeout=600)
    assert again.returncode == 0, f"first driver:\n{output}\nsecond driver:\n{resumed}"
    assert "journaled by an earlier driver" in resumed and "0 to run" in resumed, resumed
    assert_every_point_once(mlflow_server.uri, f"{output}\n{resumed}")
    assert not list(journal.glob("*.jsonl"))
