"""The shared core's seams: registries of model variants and RL learners, and validation that stays torch-free."""

import dataclasses
import subprocess
import sys

import pytest

from neuralgpu.config import TrainConfig
from neuralgpu.variants import VARIANTS, ModelVariant, variant
from rl_tasks.config import AGENTS, RLConfig
from rl_tasks.learners import LEARNERS
from rl_tasks.learners.base import Learner
from seedcore.cli import format_progress
from seedcore.config import SEED_FIELDS
from seedcore.registry import load_object
from sweeps.schema import CONFIG_DIR


def test_validating_every_shipped_sweep_and_run_config_imports_no_torch():
    names = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
    code = (
        "import sys\n"
        "from sweeps.expand import load_sweep\n"
        "from neuralgpu.config import TrainConfig\n"
        "from rl_tasks.config import RLConfig\n"
        f"for name in {names!r}:\n"
        "    assert load_sweep(name).trials\n"
        "TrainConfig.from_dict({'model': 'f17'}); RLConfig.from_dict({'agent': 'reinforce'})\n"
        "print(sorted(m for m in ('torch', 'ray', 'mlflow') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("name", list(VARIANTS))
def test_each_variant_fills_every_field_left_to_the_model(name):
    # Unset split seeds are `seed`'s (RunConfig.run_seeds), not the model's.
    to_the_model = {f.name for f in dataclasses.fields(TrainConfig) if f.default is None} - set(SEED_FIELDS)
    assert isinstance(variant(name), ModelVariant)
    assert set(variant(name).recipe) == to_the_model
    cfg = TrainConfig.from_dict({"model": name})
    assert all(getattr(cfg, key) is not None for key in to_the_model)


def test_the_config_names_exactly_the_registered_learners():
    assert AGENTS == tuple(LEARNERS)
    for name, target in LEARNERS.items():
        assert issubclass(load_object(target), Learner), name
        assert RLConfig.from_dict({"agent": name}).agent == name


def test_an_unregistered_model_or_learner_is_a_config_error_naming_the_choices():
    with pytest.raises(ValueError, match="`model` is 'k16'; use one of k15, f17"):
        TrainConfig.from_dict({"model": "k16"})
    with pytest.raises(ValueError, match="`agent` is 'sarsa'; use one of qlearning, reinforce"):
        RLConfig.from_dict({"agent": "sarsa"})


def test_progress_line_fills_fields_drops_segments_missing_a_metric_and_lists_evaluations():
    template = "step {step:>4.0f}  [loss {train/loss:.2f}  ][eps {train/epsilon:.1f}  ]{train/rate:.0f}/s"
    metrics = {"step": 7.0, "train/loss": 0.125, "train/rate": 99.6, "eval/seq_error@9": 0.5, "eval/x": 1.0}
    line = format_progress(template, metrics, ("eval/seq",), ".3f")
    assert line == "step    7  loss 0.12  100/s  seq_error@9=0.500"


def test_the_loop_stops_for_the_budget_its_config_names():
    # RL counts episodes: its budget's name is its stop reason, as for the Neural GPU's steps.
    assert RLConfig.step_budget == "max_episodes" and TrainConfig.step_budget == "max_steps"
    result = load_object("rl_tasks.train:train")(
        RLConfig.from_dict({"max_episodes": 3, "hidden": 4, "eval_lengths": [3], "eval_examples": 1})
    )
    assert (result.stop_reason, result.steps) == ("max_episodes", 3)
