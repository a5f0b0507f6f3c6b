"""Shared fixtures. Ray is slow to start on a 2-core machine, so every test that needs it shares one local
cluster, started the first time such a test asks for it (tests that never ask never start Ray)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "sweeps" / "configs"


@pytest.fixture(scope="session")
def ray_cluster() -> str:
    """A 2-CPU local Ray cluster for the whole session; yields its address for driver subprocesses."""
    ray = pytest.importorskip("ray")
    if not ray.is_initialized():
        from sweeps.ray_executor import start_local_ray

        start_local_ray(num_cpus=2)  # as a sweep's own local cluster: listening on 127.0.0.1 only
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture
def isolated_tracking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the default MLflow store at a temporary file and make sure nothing leaks to the repo's runs/."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'env-default.db'}")
    return tmp_path


def write_sweep(directory: Path, template: str = "tiny", file_name: str | None = None, **changes: object) -> Path:
    """A copy of a shipped config that records under `directory`, with top-level keys replaced by `changes`
    (None deletes a key). Returns the new file's path."""
    values = yaml.safe_load((CONFIGS / f"{template}.yaml").read_text())
    values["tracking"] = {"uri": f"sqlite:///{directory / 'mlflow.db'}", "storage": str(directory / "storage")}
    for key, value in changes.items():
        if value is None:
            values.pop(key, None)
        else:
            values[key] = value
    path = directory / (file_name or f"{template}.yaml")
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def sweep_writer():
    """write_sweep itself, for fixtures with a wider scope than one test's tmp_path."""
    return write_sweep


@pytest.fixture
def make_sweep(tmp_path: Path):
    """write_sweep bound to this test's temporary directory."""
    return lambda template="tiny", file_name=None, **changes: write_sweep(tmp_path, template, file_name, **changes)


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty MLflow sqlite store, created once: building the schema takes seconds, copying it does not."""
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def mlflow_db(tmp_path: Path, mlflow_template: Path) -> Path:
    """A fresh store at the path that `make_sweep` configs record to."""
    import shutil

    target = tmp_path / "mlflow.db"
    shutil.copyfile(mlflow_template, target)
    return target


@pytest.fixture
def mlflow_server(tmp_path: Path):
    """A real `mlflow server` on a free loopback port, recording to a sqlite store and an artifact folder in
    tmp_path; `.stop()` and `.start()` make the store go away and come back (same port, same data)."""
    from servers import MlflowServer

    with MlflowServer(f"sqlite:///{tmp_path / 'server.db'}", tmp_path / "server-artifacts") as server:
        yield server


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`bench` tests (minutes each) run only when asked for by marker (`make test-faults`), never in a plain run,
    `make test` or `make test-slow`."""
    if "bench" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="bench: run with `make test-faults`")
    for item in items:
        if "bench" in item.keywords:
            item.add_marker(skip)
