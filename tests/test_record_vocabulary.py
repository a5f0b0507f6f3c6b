"""The record's vocabulary (seedcore.record) against what is really written: every metric that a trainer reports,
that the recorder adds to a trial's run or that it writes to the parent run is documented there, every documented
metric is written by one of a few tiny runs, and every name survives MLflow's spelling and back."""

from __future__ import annotations

import pytest
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID
from mlflow.utils.validation import _validate_metric_name
from tiny import collect, neuralgpu_config, rl_config

from neuralgpu.train import train as train_neuralgpu
from rl_tasks.train import train as train_rl
from seedcore import record
from sweeps.expand import load_sweep
from sweeps.runner import summary_of
from sweeps.tracking import Store, SweepRecorder, tracking_uri

NEURALGPU_RUNS = {
    # Digit error below 1 at length 9 holds for any model that gets one digit right: the final test passes, its
    # confirmation test runs, and the run succeeds at step 40 with every metric reported.
    "k15, succeeds and confirms": dict(
        model="k15", success_metric="digit_error", success_threshold=1.0, success_confirm=8
    ),
    "f17": dict(model="f17", curriculum="bins", bins=[5, 7]),  # its default bins are longer than max_length
}
RL_RUNS = {
    # A random policy on Reverse averages a reward of about 0.4: the first 100-episode window solves it.
    "qlearning, solved": dict(agent="qlearning", reward_threshold=0.001, max_episodes=110),
    "reinforce": dict(agent="reinforce"),
}
SAMPLE_FIELDS = {"L": 201, "cell": "width-4_task-badd"}
"""A value for every placeholder, to turn a documented name into a concrete one."""


def run(train, config, label: str) -> tuple[dict, list[dict]]:
    result, reports = collect(train, config)
    assert reports, f"{label}: the trainer reported nothing"
    return result.to_dict(), reports


@pytest.fixture(scope="module")
def runs() -> dict[str, dict[str, tuple[dict, list[dict]]]]:
    """trainer -> run label -> (result, reports), each run trained once for the whole module."""
    return {
        record.NEURALGPU: {
            label: run(train_neuralgpu, neuralgpu_config(**changes), label) for label, changes in NEURALGPU_RUNS.items()
        },
        record.RL: {
            label: run(train_rl, rl_config(env="Reverse", **changes), label) for label, changes in RL_RUNS.items()
        },
    }


def reported(trainer_runs: dict[str, tuple[dict, list[dict]]]) -> set[str]:
    return {name for _, reports in trainer_runs.values() for report in reports for name in report}


@pytest.mark.parametrize("trainer", record.TRAINERS)
def test_what_each_trainer_reports_is_exactly_what_is_documented(runs, trainer):
    names = reported(runs[trainer])
    undocumented = sorted(name for name in names if not record.documented(name, trainer))
    assert not undocumented, f"{trainer} reports metrics that seedcore.record does not document: {undocumented}"
    never = [m.name for m in record.METRICS[trainer] if not any(m.matches(name) for name in names)]
    assert not never, f"seedcore.record documents {trainer} metrics that no test run reported: {never}"
    results = [result for result, _ in runs[trainer].values()]
    assert all(result["stop_reason"] in record.STOP_REASONS for result in results)
    assert any(result["stop_reason"] == "success" for result in results), "a run meant to succeed did not"


def test_documented_matches_whole_names_of_the_writer_only():
    assert record.documented("eval/seq_error@201", record.NEURALGPU)
    assert record.documented("eval/seq_error@train", record.NEURALGPU)
    assert not record.documented("eval/seq_error@train", record.RL), "RL tests fixed lengths only"
    assert not record.documented("eval/seq_error@", record.NEURALGPU)
    assert not record.documented("eval/seq_error@201/x", record.NEURALGPU)
    assert not record.documented("train/epsilon", record.NEURALGPU) and record.documented("train/epsilon", record.RL)
    assert record.documented("cell/width-4_task-badd/ci_low", record.POOL)
    assert not record.documented("cell/a/b/ci_low", record.POOL)
    assert "test length" in record.find("eval/digit_error@401", record.NEURALGPU).meaning
    with pytest.raises(ValueError, match="use one of neuralgpu, rl, recorder, pool"):
        record.documented("train/loss", "ppo")


def test_every_name_round_trips_through_mlflow_spelling():
    assert record.mlflow_key("eval/seq_error@201") == "eval/seq_error_at_201"
    assert record.trainer_key("eval/seq_error_at_201") == "eval/seq_error@201"
    for writer, metrics in record.METRICS.items():
        for metric in metrics:
            name = metric.name.format(**SAMPLE_FIELDS)
            assert metric.matches(name), f"{writer}: {metric.name} does not match its own example {name}"
            key = record.mlflow_key(name)
            _validate_metric_name(key)  # raises on a name MLflow would refuse
            assert record.trainer_key(key) == name and record.mlflow_key(record.trainer_key(key)) == key
    assert record.PARENT_TAG == MLFLOW_PARENT_RUN_ID


def test_the_recorder_writes_only_documented_metrics_and_tags(runs, make_sweep, mlflow_db):
    """A successful trial's reports go through the recorder into MLflow; what comes back is all documented, and
    every RECORDER and POOL metric is there."""
    sweep = load_sweep(str(make_sweep()))
    store = Store(tracking_uri(sweep), sweep.name)
    recorder = SweepRecorder(store, sweep, {}, commit="abc")
    parent_id = recorder.start_parent("python -m sweeps run tiny", pending=len(sweep.trials), tune_path="tune/tiny")
    trial = sweep.trials[0]
    run_id = recorder.open_trial(trial)
    result, reports = runs[record.NEURALGPU]["k15, succeeds and confirms"]
    for report in reports:
        recorder.add_metrics(trial.key, report)
    recorder.finish_trial(trial.key, {**result, "trial_time_s": 3.0, "trial_cpu_s": 2.5})
    recorder.finish_parent("FINISHED", *summary_of(sweep, store.trial_runs()))

    child, parent = store.client.get_run(run_id), store.client.get_run(parent_id)
    stored = {record.trainer_key(key) for key in child.data.metrics}
    kept = {name for report in reports for name in report if record.is_trainer_metric(name)}
    assert kept <= stored, f"reported metrics missing from the run: {sorted(kept - stored)}"
    undocumented = sorted(name for name in stored - kept if not record.documented(name, record.RECORDER))
    assert not undocumented, f"the recorder writes metrics that seedcore.record does not document: {undocumented}"
    assert {m.name for m in record.RECORDER_METRICS} <= stored
    pool = set(parent.data.metrics)
    undocumented = sorted(name for name in pool if not record.documented(name, record.POOL))
    assert not undocumented, f"the parent run holds metrics that seedcore.record does not document: {undocumented}"
    never = [m.name for m in record.POOL_METRICS if not any(m.matches(name) for name in pool)]
    assert not never, f"documented parent-run metrics the recorder did not write: {never}"

    known = set(record.TAGS) | set(record.CONFIG_TAGS[record.NEURALGPU])
    assert set(child.data.tags) - known == set(), "undocumented tags on the trial's run"
    assert set(parent.data.tags) - known == set(), "undocumented tags on the parent run"
    assert child.data.tags[record.ROLE_TAG] == record.ROLE_TRIAL
    assert child.data.tags[record.STOP_REASON_TAG] == "success"
    assert parent.data.tags[record.ROLE_TAG] == record.ROLE_PARENT
    experiment = store.client.get_experiment(store.experiment_id)
    assert experiment.tags[record.ROLE_TAG] == record.ROLE_SWEEP
