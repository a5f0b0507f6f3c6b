"""Adaptive pools (sweeps/adaptive.py): the looks replayed from a record without Ray, the `adaptive:` section's
errors, and one real adaptive sweep of the tiny config on the shared Ray cluster."""

from __future__ import annotations

import json
import shutil

import pytest
from mlflow import MlflowClient

from sweeps.adaptive import LOOKS_ARTIFACT, replay
from sweeps.cli import main
from sweeps.expand import load_sweep
from sweeps.schema import SweepConfigError

SEEDS_0_TO_8 = {"science": {"width": [4, 6]}, "nuisance": {"seed": {"start": 0, "stop": 8}}}
HALFWIDTH_FOR_WIDTH_4 = {"min_seeds": 2, "batch": 2, "questions": [{"halfwidth": 0.35, "where": {"width": 4}}]}
"""0/2 gives a sequence [0, 0.863] (half-width 0.43, open); 0/4 gives [0, 0.658] (0.33, decided)."""
COMPARE = {"min_seeds": 2, "batch": 2, "questions": [{"compare": {"width": [4, 6]}}]}


def outcomes_where(sweep, success) -> dict[str, bool]:
    """Every trial of the pool 'finished', with success(trial) as its outcome."""
    return {t.key: success(t) for t in sweep.trials}


def test_a_decided_cell_stops_and_an_open_one_grows_by_a_batch(make_sweep):
    sweep = load_sweep(str(make_sweep(axes=SEEDS_0_TO_8, adaptive=HALFWIDTH_FOR_WIDTH_4)))
    state = replay(sweep, outcomes_where(sweep, lambda t: False))
    assert state.done and [look.added for look in state.looks] == [{"width=4": 2}, {}]
    first, second = state.looks
    assert first.cells["width=4"]["high"] == pytest.approx(0.863, abs=1e-3) and not first.decisions[0]["decided"]
    assert second.cells["width=4"]["trials"] == 4 and second.decisions[0]["decided"]
    assert second.cells["width=6"]["trials"] == 2, "a cell without a question runs min_seeds"
    assert sorted((t.cell["width"], t.seed) for t in state.pool) == [(4, 0), (4, 1), (4, 2), (4, 3), (6, 0), (6, 1)]


def test_a_comparison_grows_both_cells_until_the_evalue_reaches_one_over_alpha(make_sweep):
    sweep = load_sweep(str(make_sweep(axes=SEEDS_0_TO_8, adaptive=COMPARE)))
    # width 4 always succeeds, width 6 never: E after 4 pairs = 1 * 9/4 * 25/9 * 49/16 = 19.1 < 20, after 6 it is
    # past 20 (tests/test_sequential.py has the hand computation of each factor).
    state = replay(sweep, outcomes_where(sweep, lambda t: t.cell["width"] == 4))
    assert [look.cells["width=4"]["seeds"] for look in state.looks] == [2, 4, 6]
    assert [d["decided"] for look in state.looks for d in look.decisions] == [False, False, True]
    assert state.looks[1].decisions[0]["evalue"] == pytest.approx(1 * 9 / 4 * 25 / 9 * 49 / 16, rel=1e-6)
    assert state.done and len(state.pool) == 12
    # Equal cells are never decided: both grow to the end of the seed axis.
    state = replay(sweep, outcomes_where(sweep, lambda t: False))
    assert state.done and len(state.pool) == 16 and not state.looks[-1].decisions[0]["decided"]
    assert state.looks[-1].added == {}


def test_the_looks_continue_from_the_record_where_it_stops(make_sweep):
    sweep = load_sweep(str(make_sweep(axes=SEEDS_0_TO_8, adaptive=COMPARE)))
    everything = outcomes_where(sweep, lambda t: t.cell["width"] == 4)
    full = replay(sweep, everything)
    # The record of a pool killed during its second look: the first look's four trials and one of the second's.
    first_look = {t.key for t in sweep.trials if t.seed < 2}
    killed = {k: v for k, v in everything.items() if k in first_look}
    killed[next(t.key for t in sweep.trials if t.seed == 2)] = True
    state = replay(sweep, killed)
    assert not state.done and len(state.looks) == 1 and state.looks[0] == full.looks[0]
    assert {t.seed for t in state.pool} == {0, 1, 2, 3}, "the second look's trials, run or to run"
    # A finished trial beyond the looks (from an earlier fixed pool) changes nothing until its look comes.
    beyond = {**killed, **{t.key: True for t in sweep.trials if t.seed == 7}}
    assert replay(sweep, beyond) == state


def test_familywise_splits_alpha_over_the_decisions(make_sweep):
    """Two decisions at alpha 0.05 familywise: each at 0.025, so 'different' needs an e-value of 40, not 20."""
    questions = [{"compare": {"width": [4, 6]}}, {"halfwidth": 0.45, "where": {"width": 6}}]
    per_decision = load_sweep(str(make_sweep(axes=SEEDS_0_TO_8, adaptive={**COMPARE, "questions": questions})))
    familywise = load_sweep(
        str(make_sweep(axes=SEEDS_0_TO_8, adaptive={**COMPARE, "questions": questions, "familywise": True}))
    )
    outcome = lambda t: t.cell["width"] == 4  # noqa: E731
    looser, stricter = (
        replay(per_decision, outcomes_where(per_decision, outcome)),
        replay(familywise, outcomes_where(familywise, outcome)),
    )
    assert "e-value" in looser.looks[-1].decisions[0]["why"] and ">= 20" in looser.looks[-1].decisions[0]["why"]
    assert ">= 40" in stricter.looks[-1].decisions[0]["why"] and stricter.looks[-1].decisions[0]["decided"]
    low, high = stricter.looks[0].cells["width=6"]["low"], stricter.looks[0].cells["width=6"]["high"]
    wide_low, wide_high = looser.looks[0].cells["width=6"]["low"], looser.looks[0].cells["width=6"]["high"]
    assert low == wide_low == 0 and high > wide_high, "the cells' intervals are taken at the split level too"


def test_dry_run_and_status_show_the_first_looks_trials_not_the_whole_seed_axis(make_sweep, mlflow_db, capsys):
    path = make_sweep(axes=SEEDS_0_TO_8, adaptive=HALFWIDTH_FOR_WIDTH_4)
    assert main(["run", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "16 trials = 2 cells x 8 nuisance settings" in out
    assert "the first look runs the 4 trials below (2 seeds a cell)" in out and "at most the 16" in out
    listed = [line.split()[3] for line in out.splitlines() if line[:1].isdigit()]
    assert sorted(map(int, listed)) == [0, 0, 1, 1], "one row per first-look trial, seeds 0 and 1"
    assert main(["status", str(path)]) == 0
    out = capsys.readouterr().out
    assert "4 trials in the pool: 4 pending" in out and "rate [95% anytime]" in out


@pytest.mark.parametrize(
    ("adaptive", "message"),
    [
        ({"min_seeds": 2, "batch": 2, "questions": [{"compare": {"width": [4, 8]}}]}, "width=8, which is not a value"),
        ({"min_seeds": 2, "batch": 2, "questions": [{"compare": {"depth": [4, 6]}}]}, "`depth`, not a science field"),
        ({"min_seeds": 2, "batch": 2, "questions": [{"halfwidth": 0.3, "compare": {"width": [4, 6]}}]}, "exactly one"),
        ({"min_seeds": 2, "batch": 2, "questions": [{"compare": {"width": [4]}}]}, "two different values"),
        ({"min_seeds": 9, "batch": 2, "questions": [{"halfwidth": 0.3}]}, "has 8 seeds"),
        ({"min_seeds": 2, "batch": 2, "questions": [{"halfwidth": 0.7}]}, "questions[0].halfwidth"),
    ],
)
def test_bad_adaptive_sections_are_refused_naming_the_key(make_sweep, adaptive, message):
    with pytest.raises(SweepConfigError, match="adaptive") as caught:
        load_sweep(str(make_sweep(axes=SEEDS_0_TO_8, adaptive=adaptive)))
    assert message in str(caught.value) and "Nothing was launched" in str(caught.value)


@pytest.mark.slow
def test_an_adaptive_pool_adds_seeds_only_where_undecided_and_a_rerun_adds_none(
    make_sweep, mlflow_db, ray_cluster, capsys
):
    """tiny's 60 steps teach no seed anything (every trial fails, deterministically), so the looks are known:
    width 4 is open at 0/2 and decided at 0/4; width 6 has no question."""
    path = make_sweep(axes=SEEDS_0_TO_8, adaptive=HALFWIDTH_FOR_WIDTH_4)
    assert main(["run", str(path)]) == 0
    out = capsys.readouterr().out
    assert "adding seeds where a question is open: width=4 +2" in out and "every question decided" in out
    client = MlflowClient(tracking_uri=f"sqlite:///{mlflow_db}")
    experiment = client.get_experiment_by_name("tiny")
    trials = client.search_runs([experiment.experiment_id], "tags.`seedpool.role` = 'trial'")
    assert sorted((r.data.tags["width"], r.data.tags["seed"]) for r in trials) == [
        ("4", "0"),
        ("4", "1"),
        ("4", "2"),
        ("4", "3"),
        ("6", "0"),
        ("6", "1"),
    ]
    (parent,) = client.search_runs([experiment.experiment_id], "tags.`seedpool.role` = 'parent'")
    looks = json.loads(open(client.download_artifacts(parent.info.run_id, LOOKS_ARTIFACT)).read())
    assert [look["added"] for look in looks] == [{"width=4": 2}, {}]
    assert [look["cells"]["width=4"]["successes"] for look in looks] == [0, 0]
    assert looks[1]["decisions"][0]["decided"] and not looks[0]["decisions"][0]["decided"]
    assert [sum(c["seeds"] for c in look["cells"].values()) for look in looks] == [4, 6]
    assert parent.data.metrics["pool/trials"] == 6, "the summary covers the trials the looks chose"

    assert main(["run", str(path)]) == 0
    out = capsys.readouterr().out
    assert "2 look(s) in the record, 6 trials finished; every question is settled, nothing to run" in out
    assert "look 2 (from the record)" in out
    assert len(client.search_runs([experiment.experiment_id], "tags.`seedpool.role` = 'trial'")) == 6
    assert len(client.search_runs([experiment.experiment_id], "tags.`seedpool.role` = 'parent'")) == 1
    shutil.rmtree(mlflow_db.parent / "storage", ignore_errors=True)
