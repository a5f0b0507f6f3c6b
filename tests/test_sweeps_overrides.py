"""Command-line overrides of a sweep (`budget.steps=2000 axes.science.width=[24,64]`): read as YAML, set at their
dotted path before validation, checked like the file; a typo names the keys allowed there."""

from __future__ import annotations

import pytest

from sweeps.cli import main
from sweeps.expand import load_sweep
from sweeps.overrides import parse_override
from sweeps.schema import SweepConfigError


@pytest.mark.parametrize(
    ("text", "path", "value"),
    [
        ("budget.steps=2000", ("budget", "steps"), 2000),
        ("base.lr=0.01", ("base", "lr"), 0.01),
        ("axes.science.width=[24, 64]", ("axes", "science", "width"), [24, 64]),
        ("axes.nuisance.seed={start: 2, stop: 4}", ("axes", "nuisance", "seed"), {"start": 2, "stop": 4}),
        ("base.task=mul", ("base", "task"), "mul"),
        ("stopping=null", ("stopping",), None),
        ("~base.task", ("base", "task"), None),
        ("+description=a b=c", ("description",), "a b=c"),  # `+` is Hydra's "add"; only the first `=` splits
    ],
)
def test_an_override_is_a_dotted_path_and_a_yaml_value(text, path, value):
    override = parse_override(text)
    assert (override.path, override.value, override.text) == (path, value, text)
    assert override.remove == text.startswith("~")


def test_overrides_reach_nested_keys_and_change_the_trials(make_sweep):
    path = str(make_sweep())
    plain = load_sweep(path)
    sweep = load_sweep(
        path,
        ["axes.science.width=[4]", "axes.nuisance.seed.stop=3", "base.batch_size=4", "stopping.patience_steps=30"],
    )
    assert [t.axis_values for t in sweep.trials] == [{"width": 4, "seed": s} for s in range(3)]
    assert {t.run_config["batch_size"] for t in sweep.trials} == {4}
    assert sweep.config.stopping is not None and sweep.config.stopping.patience_steps == 30, "a section is created"
    assert not {t.key for t in sweep.trials} & {t.key for t in plain.trials}, "changed run fields change the keys"
    assert sweep.values["axes"]["nuisance"]["seed"] == {"start": 0, "stop": 3}
    # Growing the seeds alone keeps every earlier trial's key: pool growth.
    grown = load_sweep(path, ["axes.nuisance.seed.stop=3"])
    assert {t.key for t in plain.trials} < {t.key for t in grown.trials}


def test_split_seed_ranges_take_start_and_stop_overrides():
    crossed = load_sweep("seed_sources")
    grown = load_sweep("seed_sources", ["axes.nuisance.init_seed.stop=6", "axes.nuisance.data_seed.start=1"])
    assert {(t.axis_values["init_seed"], t.axis_values["data_seed"]) for t in grown.trials} == {
        (i, d) for i in range(6) for d in range(1, 8)
    }
    assert len(crossed.trials) == 64 and len(grown.trials) == 42


@pytest.mark.parametrize(
    ("overrides", "fragments"),
    [
        (["budget.stpes=1"], ["override `budget.stpes=1`", "unknown key `budget.stpes`", "`steps`", "steps, minutes"]),
        (["bugdet.steps=1"], ["unknown key `bugdet`", "`budget`", "name, description, trainer, base, axes"]),
        (["base.widht=3"], ["unknown key `base.widht`", "`width`", "python -m neuralgpu.train --help"]),
        (["axes.nuisance.seed.stp=2"], ["unknown key `axes.nuisance.seed.stp`", "start, stop"]),
        (["budget.steps.max=1"], ["`budget.steps` is a single value"]),
        (["budget.steps"], ["is not an override", "dotted.key=value"]),
        (["budget.steps="], ["gives no value"]),
        (["~base.task=badd"], ["a removal is `~dotted.key`"]),
        (["~base.tsk"], ["unknown key `base.tsk`", "`task`"]),
        (["base.eval_lengths=[11"], ["the value is not YAML"]),
    ],
)
def test_a_bad_path_is_refused_naming_the_keys_allowed_there(make_sweep, overrides, fragments):
    with pytest.raises(SweepConfigError) as raised:
        load_sweep(str(make_sweep()), overrides)
    message = str(raised.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in: {message}"
    assert message.endswith("Nothing was launched or recorded.")


@pytest.mark.parametrize(
    ("overrides", "fragments"),
    [
        (["budget.steps=abc"], ["with budget.steps=abc", "`budget.steps` is 'abc'"]),
        (["budget.steps=0"], ["`budget.steps` is 0", "greater than or equal to 1"]),
        (["base.lr=-1"], ["with base.lr=-1", "lr"]),
        (["name=null"], ["`name` is None"]),
        (["base.max_steps=5"], ["`base.max_steps` is set by `budget.steps`"]),
        (["axes.nuisance.seed=[0, 1]", "axes.nuisance.seed.stop=3"], ["`axes.nuisance.seed` is [0, 1]", "stop: 2}"]),
    ],
)
def test_a_bad_value_is_refused_like_the_file_naming_the_override(make_sweep, overrides, fragments):
    with pytest.raises(SweepConfigError) as raised:
        load_sweep(str(make_sweep()), overrides)
    for fragment in fragments:
        assert fragment in str(raised.value), f"{fragment!r} not in: {raised.value}"


def test_the_dry_run_takes_overrides_before_and_after_its_flags(make_sweep, capsys, tmp_path):
    path = str(make_sweep())
    assert main(["run", path, "axes.nuisance.seed.stop=5", "--dry-run", "budget.steps=7"]) == 0
    out = capsys.readouterr().out
    assert "10 trials = 2 cells x 5 nuisance settings" in out
    assert "budget 7 steps" in out and "overrides:     axes.nuisance.seed.stop=5 budget.steps=7" in out
    assert not (tmp_path / "mlflow.db").exists(), "a dry run records nothing"
    assert main(["run", path, "--dry-run", "budget.stpes=7"]) == 2
    assert "unknown key `budget.stpes`" in capsys.readouterr().err
    assert main(["status", path, "axes.nuisance.seed.stop=3"]) == 0
    assert "6 trials in the pool: 6 pending" in capsys.readouterr().out
    assert main(["list", "budget.steps=7"]) == 2
