"""The shared tracking set-up of a cluster, for real on loopback: a real `mlflow server` as MLFLOW_TRACKING_URI,
its backend store a database on a real PostgreSQL server started here, its artifacts proxied by the server
(`--serve-artifacts`). The tiny pool runs on the shared Ray cluster through it; everything is read back with
MLflow's own client only. Where PostgreSQL is not installed, the server records to sqlite and a warning says so."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import pytest
from drivers import driver, finish
from mlflow import MlflowClient
from mlflow.entities import ViewType
from servers import MlflowServer, backend_store, store_query, store_version

from neuralgpu.train import Trainer
from sweeps.expand import load_sweep

STEPS, REPORT_EVERY = 60, 10  # tiny.yaml's budget and report interval


@pytest.fixture(scope="session")
def backend_uri(tmp_path_factory: pytest.TempPathFactory):
    """A PostgreSQL database for an MLflow server's backend store, on a server of its own for the session (sqlite
    with a warning where PostgreSQL is not installed)."""
    with backend_store(tmp_path_factory.mktemp("backend")) as uri:
        yield uri


def param_spelling(value: object) -> str:
    """A run-config value as the recorder logs it as an MLflow param: lists as JSON, everything else as str."""
    return json.dumps(value) if isinstance(value, list | tuple | dict) else str(value)


@pytest.mark.slow
def test_a_sweep_records_through_an_mlflow_server_on_postgresql(
    backend_uri, make_sweep, tmp_path, ray_cluster, monkeypatch
):
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # four downloads, four bars in the log
    print(f"\nbackend store: {store_version(backend_uri)}")
    artifacts = tmp_path / "server-artifacts"
    started = time.monotonic()
    with MlflowServer(backend_uri, artifacts) as server:
        print(f"mlflow server ready in {time.monotonic() - started:.1f} s (schema migrations included)")
        path = make_sweep(tracking={"storage": str(tmp_path / "storage"), "log_checkpoints": True})
        started = time.monotonic()
        output = finish(driver(path, ray_cluster, env={"MLFLOW_TRACKING_URI": server.uri}), 600)
        print(f"sweep of 4 trials in {time.monotonic() - started:.1f} s")
        assert "Traceback" not in output, output
        assert f"recording to {server.uri}" in output, f"the sweep took its store from MLFLOW_TRACKING_URI:\n{output}"

        client = MlflowClient(tracking_uri=server.uri)
        experiment = client.get_experiment_by_name("tiny")
        runs = client.search_runs([experiment.experiment_id], "tags.`seedpool.role` = 'trial'")
        trials = {trial.key: trial for trial in load_sweep(str(path)).trials}
        keys = Counter(run.data.tags["trial_key"] for run in runs)
        assert keys == Counter(list(trials)), f"one run per trial, each exactly once: {keys}\n{output}"

        for run in runs:
            trial = trials[run.data.tags["trial_key"]]
            assert run.info.status == "FINISHED", output
            assert {name: run.data.params.get(name) for name in trial.run_config} == {
                name: param_spelling(value) for name, value in trial.run_config.items()
            }, "every run-config value arrives as a param, spelled as logged"
            # tiny.yaml's 60 steps teach widths 4 and 6 no addition: every seed fails by its budget.
            assert run.data.metrics["success"] == 0.0 and run.data.tags["stop_reason"] == "max_steps"
            loss = client.get_metric_history(run.info.run_id, "train/loss")
            assert [point.step for point in loss] == list(range(REPORT_EVERY, STEPS + 1, REPORT_EVERY)), (
                "the whole curve, one point per report, in step order"
            )
            assert_checkpoint_proxied(client, run, trial, artifacts, tmp_path / "downloads")

        # The server's own database holds them: the backend is the database we started, not a store of MLflow's.
        every_run = client.search_runs(
            [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)], run_view_type=ViewType.ALL
        )
        assert store_query(backend_uri, "SELECT count(*) FROM runs") == [(len(every_run),)]
        assert len(every_run) == len(trials) + 1, "the trials' runs and the sweep's parent run"


def assert_checkpoint_proxied(client: MlflowClient, run, trial, artifacts: Path, downloads: Path) -> None:
    """The trial's final checkpoint is listed under `checkpoint/`, downloads through the server, is the trial's own
    state at its last step, and its bytes lie in the server's artifacts folder: uploaded through the proxy."""
    assert run.info.artifact_uri.startswith("mlflow-artifacts:/"), (
        f"the client uploads to the server, not to a path of its own: {run.info.artifact_uri}"
    )
    listed = [entry.path for entry in client.list_artifacts(run.info.run_id, "checkpoint")]
    assert listed, f"no checkpoint/ artifact for {trial.name}"
    downloaded = Path(client.download_artifacts(run.info.run_id, "checkpoint", str(downloads / run.info.run_id)))
    state = Trainer.load_checkpoint(downloaded)
    assert state["progress"]["step"] == STEPS and state["config"]["seed"] == trial.seed
    on_server = artifacts / run.info.artifact_uri.removeprefix("mlflow-artifacts:/") / "checkpoint"
    for name in listed:
        relative = Path(name).relative_to("checkpoint")
        assert (on_server / relative).read_bytes() == (downloaded / relative).read_bytes(), (
            f"{name} is not in the server's artifacts folder {artifacts}"
        )
