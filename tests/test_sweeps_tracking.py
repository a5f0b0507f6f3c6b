"""The MLflow record without Ray: child runs found by key, batched curves, final verdicts, no run left
RUNNING. Uses a throwaway sqlite store per test."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from mlflow.utils.validation import _validate_metric_name

from sweeps.expand import load_sweep
from sweeps.tracking import (
    KEY_TAG,
    ROLE_TAG,
    Store,
    SweepBusyError,
    SweepRecorder,
    is_trainer_metric,
    mlflow_key,
    tracking_uri,
)

RESULT = {
    "success": False,
    "steps_to_success": None,
    "stop_reason": "max_steps",
    "steps": 60,
    "wall_time_s": 1.5,
    "trial_time_s": 2.0,
    "final_metrics": {},
    "eval_table": [{"length": 11, "seq_error": 1.0, "digit_error": 0.5, "examples": 16}],
    "diverged_step": None,
}


@pytest.fixture
def sweep(make_sweep):
    return load_sweep(str(make_sweep()))


@pytest.fixture
def store(sweep, mlflow_db):
    return Store(tracking_uri(sweep), sweep.name)


def test_metric_names_become_valid_mlflow_names():
    assert mlflow_key("eval/seq_error@201") == "eval/seq_error_at_201"
    for name in ("eval/seq_error@201", "eval/digit_error@train", "train/loss", "curriculum/length"):
        _validate_metric_name(mlflow_key(name))  # raises on a name MLflow would refuse
    assert is_trainer_metric("train/loss") and is_trainer_metric("success")
    assert not is_trainer_metric("training_iteration") and not is_trainer_metric("time_this_iter_s")


def test_store_with_create_false_creates_no_database(sweep, tmp_path):
    store = Store(tracking_uri(sweep), sweep.name, create=False)
    assert store.experiment_id is None and store.trial_runs() == {}
    assert not (tmp_path / "mlflow.db").exists()


def test_a_trial_run_is_created_once_and_found_again_by_key(sweep, store):
    recorder = SweepRecorder(store, sweep, {}, commit="abc")
    recorder.start_parent("python -m sweeps run tiny", pending=4, tune_path="")
    trial = sweep.trials[0]
    run_id = recorder.open_trial(trial)
    assert recorder.open_trial(trial) == run_id, "opening twice is idempotent"
    recorder.add_metrics(trial.key, {"step": 10, "train/loss": 2.0, "eval/seq_error@11": 1.0, "pid": 123})
    recorder.add_metrics(trial.key, {"step": 20, "train/loss": 1.5})
    recorder.close_open("KILLED")  # the driver was interrupted

    runs = store.trial_runs()
    assert list(runs) == [trial.key]
    run = runs[trial.key]
    assert run.info.status == "KILLED"
    assert run.data.tags[KEY_TAG] == trial.key and run.data.tags[ROLE_TAG] == "trial"
    assert (run.data.tags["seed"], run.data.tags["width"], run.data.tags["task"]) == ("0", "4", "badd")
    assert run.data.tags["git_commit"] == "abc"
    assert run.data.params["max_steps"] == "60" and run.data.params["eval_lengths"] == "[11]"
    assert "pid" not in run.data.metrics, "Tune's bookkeeping keys are not recorded"
    assert run.data.metrics["eval/seq_error_at_11"] == 1.0

    # The next invocation finds the run by key, resumes it and skips the steps it already holds.
    again = SweepRecorder(store, sweep, store.trial_runs(), commit="abc")
    assert again.open_trial(trial) == run_id
    again.add_metrics(trial.key, {"step": 20, "train/loss": 9.9})  # replayed from the checkpoint: skipped
    again.add_metrics(trial.key, {"step": 30, "train/loss": 1.0})
    again.finish_trial(trial.key, RESULT)
    history = store.client.get_metric_history(run_id, "train/loss")
    assert sorted((m.step, m.value) for m in history) == [(10, 2.0), (20, 1.5), (30, 1.0)]
    assert len(store.trial_runs()) == 1, "never a second run for the same key"


def test_finish_records_verdict_reason_and_artifacts(sweep, store, tmp_path):
    recorder = SweepRecorder(store, sweep, {}, commit="abc")
    trial = sweep.trials[1]
    run_id = recorder.open_trial(trial)
    where = {"host": "node-1", "worker_pid": "4242", "node_ip": "10.0.0.7", "ray_node_id": "ab12"}
    recorder.note_worker(trial.key, where)
    recorder.note_retry(trial.key)
    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir()
    (checkpoint / "state.pt").write_bytes(b"weights")
    recorder.finish_trial(
        trial.key,
        {**RESULT, "success": True, "steps_to_success": 40, "stop_reason": "success"},
        str(checkpoint),
    )
    run = store.client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.metrics["success"] == 1.0 and run.data.metrics["steps_to_success"] == 40
    assert run.data.metrics["steps"] == 60 and run.data.metrics["wall_time_s"] == 1.5
    assert run.data.tags["stop_reason"] == "success" and run.data.tags["host"] == "node-1"
    assert run.data.tags["worker_pid"] == "4242" and run.data.tags["retries"] == "1"
    assert run.data.tags["node_ip"] == "10.0.0.7" and run.data.tags["ray_node_id"] == "ab12"
    assert run.data.params["success_threshold"] == "0.01" and run.data.params["success_length"] == "11"
    artifacts = {a.path for a in store.client.list_artifacts(run_id)}
    assert {"config", "eval", "result.json", "checkpoint"} <= artifacts
    assert {a.path for a in store.client.list_artifacts(run_id, "checkpoint")} == {"checkpoint/state.pt"}
    assert {a.path for a in store.client.list_artifacts(run_id, "eval")} == {
        "eval/eval_table.csv",
        "eval/eval_table.json",
    }


def test_stale_runs_of_a_dead_driver_are_released(sweep, store):
    recorder = SweepRecorder(store, sweep, {}, commit="abc")
    parent = recorder.start_parent("cmd", pending=4, tune_path="")
    recorder.open_trial(sweep.trials[0])
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    store.client.set_tag(parent, "driver_pid", dead.stdout.strip())
    released = store.release_stale_runs()
    assert len(released) == 2
    statuses = {r.info.run_id: r.info.status for r in store._search("")}
    assert set(statuses.values()) == {"KILLED"}


def test_a_live_driver_blocks_a_second_one(sweep, store):
    recorder = SweepRecorder(store, sweep, {}, commit="abc")
    parent = recorder.start_parent("cmd", pending=4, tune_path="")
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        store.client.set_tag(parent, "driver_pid", str(sleeper.pid))
        with pytest.raises(SweepBusyError, match=f"pid {sleeper.pid}"):
            store.release_stale_runs()
    finally:
        sleeper.kill()
        sleeper.wait()
    assert os.getpid() != sleeper.pid


def test_the_experiment_opens_on_its_runs_and_the_parent_describes_the_pool(make_sweep, mlflow_db):
    from mlflow.utils.mlflow_tags import MLFLOW_RUN_NOTE

    from sweeps.runner import summary_of
    from sweeps.tracking import EXPERIMENT_KIND_TAG, OVERRIDES_TAG, TRAINING_EXPERIMENT, ui_link

    sweep = load_sweep(str(make_sweep()), ["axes.nuisance.seed.stop=1", "budget.steps=50"])
    store = Store(tracking_uri(sweep), sweep.name)
    assert store.client.get_experiment(store.experiment_id).tags[EXPERIMENT_KIND_TAG] == TRAINING_EXPERIMENT
    recorder = SweepRecorder(store, sweep, {}, commit="abc")
    parent = recorder.start_parent("python -m sweeps run tiny ...", pending=2, tune_path="")
    run = store.client.get_run(parent)
    assert run.data.tags[OVERRIDES_TAG] == "axes.nuisance.seed.stop=1 budget.steps=50"
    assert "2 of 2 trials to go" in run.data.tags[MLFLOW_RUN_NOTE]
    effective = store.client.download_artifacts(parent, "sweep/effective.yaml")
    assert "steps: 50" in open(effective).read() and "stop: 1" in open(effective).read()
    assert run.data.params["budget.steps"] == "50"

    trial = sweep.trials[0]
    recorder.open_trial(trial)
    recorder.finish_trial(trial.key, {**RESULT, "steps": 50})
    table, summary, text = summary_of(sweep, store.trial_runs())
    recorder.finish_parent("FINISHED", table, summary, text)
    note = store.client.get_run(parent).data.tags[MLFLOW_RUN_NOTE]
    lines = note.splitlines()
    assert "**tiny**: finished; 2 trials" in lines[0]
    assert "| width | seeds | success | rate [95% CI] | median steps | not successful |" in lines
    assert "| 4 | 1 | 0/1 | 0.00 [0.00, 0.79] | - | max_steps 1 |" in lines
    assert "| 6 | 1 | 0/0 | - | - | unfinished 1 |" in lines
    assert "`axes.nuisance.seed.stop=1 budget.steps=50`" in note

    # An experiment recorded before the kind existed gets it when a driver next opens it (never by `status`).
    store.client.delete_experiment_tag(store.experiment_id, EXPERIMENT_KIND_TAG)
    Store(tracking_uri(sweep), sweep.name, create=False)
    assert EXPERIMENT_KIND_TAG not in store.client.get_experiment(store.experiment_id).tags
    Store(tracking_uri(sweep), sweep.name)
    assert store.client.get_experiment(store.experiment_id).tags[EXPERIMENT_KIND_TAG] == TRAINING_EXPERIMENT
    link = ui_link("http://mlflow.internal:5000/", store.experiment_id)
    assert link == f"http://mlflow.internal:5000/#/experiments/{store.experiment_id}/runs?workflowType=machine_learning"
