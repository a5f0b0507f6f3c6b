"""The recorder's journal without Ray: every trial write is durable before it is sent, a dead driver's journal is
replayed exactly once by the next run, a run is placed by the tags it is created with, and a verdict is logged
once. Reads the store back with MLflow's own client."""

from __future__ import annotations

import shutil

import pytest
from mlflow import MlflowClient

from sweeps import journal
from sweeps.expand import load_sweep
from sweeps.runner import open_store
from sweeps.tracking import Store, SweepRecorder, journal_directory, tracking_uri

REPORTS = [{"step": s, "train/loss": 1.0 / s, "eval/seq_error@11": 0.5, "success": 0.0} for s in (10, 20, 30)]
RESULT = {
    "success": True,
    "steps_to_success": 30,
    "stop_reason": "success",
    "steps": 30,
    "wall_time_s": 1.5,
    "trial_time_s": 2.0,
    "final_metrics": {},
    "eval_table": [],
    "diverged_step": None,
}


@pytest.fixture
def sweep(make_sweep):
    return load_sweep(str(make_sweep()))


def dead_driver(sweep, reports=REPORTS):
    """A driver that opened the first trial and received `reports`, then died before sending its buffer."""
    store = Store(tracking_uri(sweep), sweep.name)
    recorder = SweepRecorder(store, sweep, store.trial_runs(), commit="abc")
    recorder.start_parent("cmd", pending=1, tune_path="")
    trial = sweep.trials[0]
    recorder.open_trial(trial)
    for report in reports:
        recorder.add_metrics(trial.key, report)
    recorder.journal.close()  # killed: no flush, no finish, the journal stays
    return trial, recorder


def history(sweep, key: str, name: str) -> list[tuple[int, float]]:
    client = MlflowClient(tracking_uri(sweep))
    (run,) = client.search_runs([client.get_experiment_by_name(sweep.name).experiment_id], f"tags.trial_key = '{key}'")
    return sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, name))


def test_a_journal_drops_only_a_torn_last_line(tmp_path):
    book = journal.Journal(tmp_path)
    book.append([{"op": "tags", "key": "k", "tags": {"a": "1"}}, {"op": "tags", "key": "k", "tags": {"b": "2"}}])
    book.close()
    with book.path.open("a") as handle:
        handle.write('{"op": "tags", "key"')  # the driver died mid-write
    assert [op["tags"] for op in journal.read(book.path)] == [{"a": "1"}, {"b": "2"}]
    book.path.write_text('{"op": "tags"\n{"op": "end", "key": "k"}\n')
    with pytest.raises(ValueError, match="line 1 is not a journal entry"):
        journal.read(book.path)


def test_points_a_dead_driver_had_not_sent_reach_the_store_once(sweep):
    trial, dead = dead_driver(sweep)
    assert history(sweep, trial.key, "train/loss") == [], "buffered, not sent: lost without the journal"
    left = journal.leftovers(journal_directory(sweep))
    assert left == [dead.journal.path]
    # The replay is cut off after sending, before the journal is removed: the next replay sends it all again.
    copy = dead.journal.path.with_suffix(".copy")
    shutil.copy(dead.journal.path, copy)
    open_store(sweep, say=lambda message: None)
    assert journal.leftovers(journal_directory(sweep)) == []
    copy.rename(dead.journal.path)
    messages = []
    store = open_store(sweep, say=messages.append)
    assert "sent 4 writes (9 metric points) journaled by an earlier driver" in messages[0]
    assert history(sweep, trial.key, "train/loss") == [(10, 0.1), (20, 0.05), (30, 1 / 30)]
    assert history(sweep, trial.key, "eval/seq_error_at_11") == [(10, 0.5), (20, 0.5), (30, 0.5)]
    (run,) = store.trial_runs().values()
    assert run.info.status == "KILLED", "released as a dead driver's run once its journal is in"
    assert run.data.params["max_steps"] == "60"


def test_a_resumed_trial_continues_after_the_journaled_steps(sweep):
    trial, _ = dead_driver(sweep)
    store = open_store(sweep, say=lambda message: None)
    recorder = SweepRecorder(store, sweep, store.trial_runs(), commit="abc")
    recorder.open_trial(trial)
    # The trial resumes from its step-20 checkpoint: steps 30 again (skipped, already recorded), then 40.
    for report in [{"step": 30, "train/loss": 9.0}, {"step": 40, "train/loss": 0.02, "success": 1.0}]:
        recorder.add_metrics(trial.key, report)
    recorder.finish_trial(trial.key, {**RESULT, "steps": 40, "steps_to_success": 40})
    assert recorder.finish() and not recorder.journal.path.exists()
    assert history(sweep, trial.key, "train/loss") == [(10, 0.1), (20, 0.05), (30, 1 / 30), (40, 0.02)]
    assert history(sweep, trial.key, "success") == [(10, 0.0), (20, 0.0), (30, 0.0), (40, 1.0)], "one verdict"
    (run,) = store.trial_runs().values()
    assert run.info.status == "FINISHED" and run.data.metrics["steps_to_success"] == 40


def test_a_run_carries_its_identity_from_creation_and_gets_missing_params_when_found_again(sweep):
    store = Store(tracking_uri(sweep), sweep.name)
    trial = sweep.trials[-1]
    client = store.client
    # A run whose driver died between creating it and logging its params (as an older recorder could leave).
    orphan = client.create_run(store.experiment_id, tags={"seedpool.role": "trial", "trial_key": trial.key})
    recorder = SweepRecorder(store, sweep, store.trial_runs(), commit="abc")
    assert recorder.open_trial(trial) == orphan.info.run_id
    run = client.get_run(orphan.info.run_id)
    assert run.data.params["seed"] == str(trial.seed) and run.data.params["max_steps"] == "60"
    fresh = SweepRecorder(store, sweep, store.trial_runs(), commit="abc")
    run = client.get_run(fresh.open_trial(sweep.trials[0]))
    assert (run.data.tags["width"], run.data.tags["seed"], run.data.tags["axes"]) == ("4", "0", "width,seed")
