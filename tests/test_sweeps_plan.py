"""The run plan (sweeps.plan) against small hand-built records of the real tiny pool: no Ray, no MLflow."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from sweeps.expand import load_sweep
from sweeps.plan import RunRecord, plan_run

REPO = Path(__file__).resolve().parents[1]
DONE, LOST = RunRecord("FINISHED", True), RunRecord("FINISHED", False)
KILLED, FAILED = RunRecord("KILLED", False), RunRecord("FAILED", False)


@pytest.fixture(scope="module")
def tiny():
    """The shipped tiny pool: widths 4 and 6 x seeds 0 and 1, seed-major (w4s0, w6s0, w4s1, w6s1)."""
    return load_sweep("tiny").trials


@pytest.fixture(scope="module")
def grown(tmp_path_factory, sweep_writer):
    """The tiny pool grown to seeds 0..2: the same four trials first, then w4s2 and w6s2."""
    axes = {"science": {"width": [4, 6]}, "nuisance": {"seed": [0, 1, 2]}}
    path = sweep_writer(tmp_path_factory.mktemp("grown"), axes=axes)
    return load_sweep(str(path)).trials


def keys(trials):
    return [t.key for t in trials]


def test_a_fresh_pool_launches_every_trial_in_expansion_order(tiny):
    plan = plan_run(tiny, {}, restart=False, previous_keys=())
    assert keys(plan.todo) == keys(plan.fresh) == keys(tiny)
    assert [t.index for t in plan.todo] == [0, 1, 2, 3]
    assert plan.finished == frozenset() and plan.restore == [] and plan.stale == [] and plan.retire == []
    assert plan.successes_before == 0


def test_a_partly_finished_pool_runs_only_what_is_not_finished(tiny):
    w4s0, w6s0, w4s1, w6s1 = keys(tiny)
    records = {w4s0: DONE, w6s0: LOST, w4s1: KILLED, w6s1: FAILED}
    plan = plan_run(tiny, records, restart=False, previous_keys=())
    assert plan.finished == {w4s0, w6s0}, "FINISHED counts as done whatever its verdict; KILLED and FAILED do not"
    assert keys(plan.todo) == keys(plan.fresh) == [w4s1, w6s1]
    assert plan.successes_before == 1


def test_an_interrupted_experiment_is_restored_for_its_unfinished_trials_only(tiny):
    w4s0, w6s0, w4s1, w6s1 = keys(tiny)
    records = {w4s0: DONE, w6s0: KILLED}
    plan = plan_run(tiny, records, restart=False, previous_keys=[w4s0, w6s0, w4s1])
    assert keys(plan.restore) == [w6s0, w4s1], "the finished w4s0 is not restored; w6s1 was never launched"
    assert keys(plan.fresh) == [w6s1]
    assert keys(plan.fresh_after({w6s0, w4s1})) == [w6s1]
    assert keys(plan.fresh_after(set())) == [w6s0, w4s1, w6s1], "an experiment that could not be restored"


def test_a_grown_pool_restores_the_old_experiment_and_launches_the_new_seeds_fresh(tiny, grown):
    assert keys(grown)[:4] == keys(tiny), "growing the seeds keeps every key and the order of the old trials"
    w4s0, w6s0, w4s1, w6s1, w4s2, w6s2 = keys(grown)
    records = {w4s0: DONE, w6s0: DONE, w4s1: KILLED}
    plan = plan_run(grown, records, restart=False, previous_keys=keys(tiny))
    assert keys(plan.todo) == [w4s1, w6s1, w4s2, w6s2]
    assert keys(plan.restore) == [w4s1, w6s1] and keys(plan.fresh) == [w4s2, w6s2]
    assert plan.successes_before == 2


def test_a_finished_old_experiment_is_not_restored(tiny, grown):
    records = {k: DONE for k in keys(tiny)}
    plan = plan_run(grown, records, restart=False, previous_keys=keys(tiny))
    assert plan.restore == [] and keys(plan.fresh) == keys(grown)[4:]


def test_an_experiment_with_trials_outside_the_pool_is_not_restored(tiny, grown):
    """A shrunk pool (or a changed config): Tune would run the old trials too, so everything starts fresh."""
    plan = plan_run(tiny, {}, restart=False, previous_keys=keys(grown))
    assert plan.restore == [] and keys(plan.fresh) == keys(tiny)


def test_runs_outside_the_pool_are_stale_and_stay(tiny):
    w4s0 = tiny[0].key
    records = {"0123456789abcdef": DONE, w4s0: DONE, "fedcba9876543210": KILLED}
    plan = plan_run(tiny, records, restart=False, previous_keys=())
    assert plan.stale == ["0123456789abcdef", "fedcba9876543210"] and plan.retire == []
    assert plan.finished == {w4s0} and plan.successes_before == 1, "a stale success is not a success of this pool"
    assert len(plan.todo) == 3


def test_restart_retires_every_run_and_runs_the_whole_pool_fresh(tiny):
    w4s0, w6s0, *_ = keys(tiny)
    records = {w6s0: DONE, "0123456789abcdef": DONE, w4s0: KILLED}
    plan = plan_run(tiny, records, restart=True, previous_keys=[w4s0])
    assert plan.retire == [w6s0, "0123456789abcdef", w4s0], "pool and stale runs alike, in record order"
    assert plan.finished == frozenset() and plan.stale == [] and plan.successes_before == 0
    assert plan.restore == [] and keys(plan.fresh) == keys(tiny)


def test_planning_needs_neither_ray_nor_mlflow():
    code = (
        "import sys\n"
        "from sweeps.expand import load_sweep\n"
        "from sweeps.plan import RunRecord, plan_run\n"
        "trials = load_sweep('tiny').trials\n"
        "plan = plan_run(trials, {trials[0].key: RunRecord('FINISHED', True)}, False, [t.key for t in trials])\n"
        "assert len(plan.restore) == 3, plan\n"
        "print(sorted(m for m in ('ray', 'mlflow', 'pandas') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_tune_experiments_pickled_before_the_executor_split_still_find_their_trial_names():
    """tuner.pkl of an experiment launched by the old runner, as Ray's cloudpickle wrote its trial_name_creator."""
    from sweeps.ray_executor import trial_name

    old = b"\x80\x05\x95 \x00\x00\x00\x00\x00\x00\x00\x8c\rsweeps.runner\x94\x8c\ntrial_name\x94\x93\x94."
    assert pickle.loads(old) is trial_name


def test_a_checkpoint_deleted_before_the_experiment_state_was_saved_is_bridged(tmp_path):
    """The checkpoint a killed driver's Tune state may still name (the one before the oldest kept) is put back as
    a copy of the oldest kept; existing checkpoints, trials without any and the first number are left alone."""
    from sweeps.ray_executor import bridge_deleted_checkpoints

    for trial, numbers in {"w4-s0": [3, 4], "w4-s1": [0, 1], "w6-s0": []}.items():
        for number in numbers:
            (tmp_path / trial / f"checkpoint_{number:06d}").mkdir(parents=True)
            (tmp_path / trial / f"checkpoint_{number:06d}" / "state.pt").write_text(f"{trial} at {number}")
    (tmp_path / "w6-s0").mkdir()
    bridge_deleted_checkpoints(str(tmp_path), ["w4-s0", "w4-s1", "w6-s0", "never-started"])
    assert (tmp_path / "w4-s0" / "checkpoint_000002" / "state.pt").read_text() == "w4-s0 at 3"
    assert sorted(p.name for p in (tmp_path / "w4-s0").iterdir()) == [f"checkpoint_00000{n}" for n in (2, 3, 4)]
    assert sorted(p.name for p in (tmp_path / "w4-s1").iterdir()) == ["checkpoint_000000", "checkpoint_000001"]
    assert list((tmp_path / "w6-s0").iterdir()) == []


def test_a_launched_trial_neither_completed_nor_failed_means_the_execution_was_cut_off():
    """A Ctrl-C between two trials ends Tune before the next trial exists: only the launched keys tell."""
    from sweeps.session import Session

    session = Session(recorder=None, progress=None, trials={}, skip=frozenset(), completed={"a"}, errored={"b"})
    session.settle(["a", "b"])
    assert not session.interrupted
    session.settle(["a", "b", "c"])
    assert session.interrupted
