"""A sweep on a real multi-node Ray cluster on this machine (tests/cluster.py: a head and worker nodes, each a
`ray start` of its own with its own CPUs, token authentication on): submitted with RAY_ADDRESS and as a Ray job,
spread over the nodes, and hit by a worker node that dies mid-sweep. The record is read back with MLflow's client.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from cluster import LoopbackCluster
from drivers import REPO, driver, finish, wait_for
from mlflow import MlflowClient

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster():
    with LoopbackCluster() as running:
        yield running.start(head_cpus=1, workers=1, worker_cpus=1)


def trial_runs(db: Path, sweep: str) -> list:
    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    experiment = client.get_experiment_by_name(sweep)
    if experiment is None:
        return []
    return list(client.search_runs([experiment.experiment_id], "tags.`seedpool.role` = 'trial'", max_results=1000))


def assert_recorded_once(db: Path, sweep: str, trials: int) -> list:
    """Every trial has exactly one run, FINISHED, with a curve whose steps never repeat; returns the runs."""
    runs = trial_runs(db, sweep)
    keys = Counter(run.data.tags["trial_key"] for run in runs)
    assert len(keys) == trials and set(keys.values()) == {1}, keys
    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    for run in runs:
        assert run.info.status == "FINISHED", (run.info.run_name, run.info.status, run.data.tags.get("error"))
        steps = [point.step for point in client.get_metric_history(run.info.run_id, "train/loss")]
        assert len(steps) > 1 and len(steps) == len(set(steps)), (run.info.run_name, sorted(steps))
    return runs


def test_a_sweep_joined_with_ray_address_spreads_over_the_nodes(cluster, make_sweep, tmp_path):
    path = make_sweep(name="cluster_address")
    started = time.monotonic()
    output = finish(driver(path, cluster.address, env=cluster.env), timeout_s=300)
    wall = time.monotonic() - started
    assert "finished after" in output, output
    runs = assert_recorded_once(tmp_path / "mlflow.db", "cluster_address", trials=4)
    node_ids = {node.node_id for node in cluster.nodes}
    ran_on = Counter(run.data.tags["ray_node_id"] for run in runs)
    assert set(ran_on) == node_ids, f"trials ran on {dict(ran_on)}; the cluster's nodes are {node_ids}"
    print(f"\n4 tiny trials on {len(node_ids)} nodes: driver wall time {wall:.1f} s; trials per node {dict(ran_on)}")


def test_a_sweep_submitted_as_a_ray_job(cluster, make_sweep, tmp_path):
    path = make_sweep(name="cluster_job")
    submit = [
        str(Path(sys.executable).with_name("ray")), "job", "submit", "--address", cluster.dashboard,
        "--submission-id", f"sweep-{tmp_path.name}", "--", sys.executable, "-m", "sweeps", "run", str(path),
    ]  # fmt: skip
    env = {**cluster.env, "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}
    env.pop("RAY_ADDRESS")  # the job's driver is given the cluster's address by Ray, on the head node
    done = subprocess.run(submit, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "succeeded" in done.stdout, done.stdout + done.stderr
    assert "finished after" in done.stdout, "the job's log is the sweep's output"
    runs = assert_recorded_once(tmp_path / "mlflow.db", "cluster_job", trials=4)
    assert {run.data.tags["ray_node_id"] for run in runs} == {node.node_id for node in cluster.nodes}


def test_a_driver_without_the_token_is_refused_in_seconds(cluster, make_sweep, tmp_path):
    path = make_sweep(name="cluster_no_token")
    started = time.monotonic()
    proc = driver(path, cluster.address, env={"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "not-the-token"})
    output = finish(proc, timeout_s=120)
    assert proc.returncode == 2, output
    assert "refused this machine's Ray token" in output and "RAY_AUTH_TOKEN" in output, output
    assert time.monotonic() - started < 60, "refused at once, not after ray.init's minute of retries"
    assert trial_runs(tmp_path / "mlflow.db", "cluster_no_token") == []


@pytest.mark.skipif(os.geteuid() != 0, reason="a node that does not see a folder needs a mount namespace (root)")
def test_storage_that_a_node_does_not_see_is_refused_before_launch(cluster, make_sweep, tmp_path):
    """A cluster whose storage is a local folder that one node lacks (a worker without the shared mount):
    trials there could not checkpoint where the driver and a retry find them. Refused, naming that node."""
    storage = tmp_path / "storage"
    storage.mkdir()
    blind = cluster.add_worker(cpus=1, hide=storage)
    try:
        proc = driver(make_sweep(name="cluster_blind_node"), cluster.address, env=cluster.env)
        output = finish(proc, timeout_s=180)
    finally:
        cluster.kill(blind)
    assert proc.returncode == 2, output
    assert f"the Ray Tune storage {storage} is a folder that Ray node(s) {blind.node_id[:12]}" in output, output
    assert "SEEDPOOL_STORAGE" in output and "Nothing was launched or recorded" in output
    assert not (tmp_path / "mlflow.db").exists() or trial_runs(tmp_path / "mlflow.db", "cluster_blind_node") == []


def test_a_worker_node_killed_mid_sweep(cluster, make_sweep, tmp_path):
    """The node dies while one of its trials trains: Tune retries that trial on a live node from its last
    checkpoint; every trial is recorded once, finished, with a curve that has no repeated step."""
    victim = cluster.add_worker(cpus=1)
    path = make_sweep(
        name="cluster_node_dies",
        budget={"steps": 400},
        axes={"science": {"width": [4]}, "nuisance": {"seed": {"start": 0, "stop": 3}}},
    )
    db = tmp_path / "mlflow.db"
    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    proc = driver(path, cluster.address, env=cluster.env)

    def training_on_victim():
        for run in trial_runs(db, "cluster_node_dies"):
            if run.data.tags.get("ray_node_id") == victim.node_id and run.info.status == "RUNNING":
                if len(client.get_metric_history(run.info.run_id, "train/loss")) >= 3:  # past a checkpoint
                    return run

    hit = wait_for(training_on_victim, timeout_s=240, proc=proc)
    cluster.kill(victim)
    output = finish(proc, timeout_s=300)
    assert proc.returncode == 0, output
    runs = {run.info.run_id: run for run in assert_recorded_once(db, "cluster_node_dies", trials=3)}
    survivor = runs[hit.info.run_id]
    assert survivor.data.tags.get("retries") == "1", survivor.data.tags
    assert survivor.data.tags["ray_node_id"] != victim.node_id, "the retry ran on a live node"
    assert survivor.data.metrics["steps"] == 400
