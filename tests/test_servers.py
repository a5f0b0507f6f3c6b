"""The test servers (tests/servers.py) are the real thing: a client records through the MLflow server, a stopped
server refuses promptly, and a restarted one still holds what was recorded; the PostgreSQL server listens on
loopback only, asks for its password, and leaves nothing behind."""

from __future__ import annotations

import time

import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from servers import NO_POSTGRES, MlflowServer, PostgresServer, alive, postgres_programs, store_query


def test_a_run_recorded_through_the_server_outlives_a_stop_and_restart(mlflow_server, monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # an unreachable server fails the call at once
    assert mlflow_server.uri.startswith("http://127.0.0.1:")
    client = MlflowClient(tracking_uri=mlflow_server.uri)
    experiment_id = client.create_experiment("outage")
    run = client.create_run(experiment_id, tags={"trial_key": "k0"})
    client.log_metric(run.info.run_id, "train/loss", 0.5, step=10)
    (artifact := tmp_path / "note.txt").write_text("kept")
    client.log_artifact(run.info.run_id, str(artifact))
    port = mlflow_server.port

    mlflow_server.stop()
    started = time.monotonic()
    with pytest.raises(MlflowException):
        client.get_run(run.info.run_id)
    assert time.monotonic() - started < 10, "with no retries a call to a stopped server fails promptly"

    mlflow_server.start()
    assert mlflow_server.port == port, "the store comes back where the client expects it"
    again = client.get_run(run.info.run_id)
    assert again.data.tags["trial_key"] == "k0"
    assert [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "train/loss")] == [(10, 0.5)]
    assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["note.txt"]
    client.log_metric(run.info.run_id, "train/loss", 0.25, step=20)  # and it takes writes again
    assert len(client.get_metric_history(run.info.run_id, "train/loss")) == 2


def test_a_server_that_cannot_start_says_why(tmp_path):
    with pytest.raises(RuntimeError, match="exited with status .*its output ended with"):
        MlflowServer("nonsense://nowhere", tmp_path / "artifacts").start()


def test_a_postgres_server_listens_on_loopback_only_asks_its_password_and_leaves_nothing():
    import psycopg

    programs = postgres_programs()
    if programs is None:
        pytest.skip(NO_POSTGRES)
    with PostgresServer(programs) as server:
        assert store_query(server.uri, "SHOW listen_addresses") == [("127.0.0.1",)]
        assert store_query(server.uri, "SELECT current_database()") == [("mlflow",)]
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(server.uri.replace(server.password, "not-the-password"))
        directory, pid = server.directory, server.process.pid
    assert not alive(pid) and not directory.exists(), "stop() ends the server and deletes its folder"
