"""init_seed and data_seed split a run's seed into its two sources of randomness, in both trainers: runs sharing
an init_seed start from the same weights, runs sharing a data_seed draw the same examples, dropout and
exploration, and a run that sets both to s is the run with seed s."""

import pytest
import torch
from tiny import collect, collect_keeping_checkpoint, neuralgpu_config, rl_config, without_timing

from neuralgpu.train import Trainer as NeuralGPUTrainer
from neuralgpu.train import train as neuralgpu_train
from rl_tasks.train import Trainer as RLTrainer
from rl_tasks.train import train as rl_train
from seedcore.config import ConfigError

# dropout and gradient noise: draws from torch's global generator after the build, which data_seed must own.
TRAINERS = {
    "neuralgpu": (NeuralGPUTrainer, neuralgpu_train, lambda **kw: neuralgpu_config(dropout=0.1, grad_noise=True, **kw)),
    "rl": (RLTrainer, rl_train, lambda **kw: rl_config(agent="reinforce", **kw)),
}


def build(name, **seeds):
    trainer_class, _, config = TRAINERS[name]
    return trainer_class(config(**seeds), None, None)


def initial_weights(trainer) -> dict[str, torch.Tensor]:
    return {key: value.clone() for key, value in trainer.model.state_dict().items()}


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)


def first_training_input(name, trainer) -> list:
    """The first thing the run trains on: the first batch's inputs, or the first episode's observations."""
    if name == "neuralgpu":
        inputs, _ = trainer.batch(trainer.cfg.task, trainer.curriculum.sample_length(trainer.rngs.data))
        return inputs.tolist()
    return trainer.play_episode().obs


@pytest.mark.parametrize("name", sorted(TRAINERS))
def test_setting_both_seeds_to_s_is_the_run_with_seed_s(name):
    _, train, config = TRAINERS[name]
    _, plain = collect(train, config(seed=3))
    _, split = collect(train, config(seed=0, init_seed=3, data_seed=3))
    assert without_timing(split) == without_timing(plain)
    _, other = collect(train, config(seed=0))
    assert without_timing(other) != without_timing(plain)


@pytest.mark.parametrize("name", sorted(TRAINERS))
def test_the_init_seed_decides_the_weights_and_the_data_seed_every_later_draw(name):
    runs, torch_states = {}, {}
    for i, d in [(1, 1), (1, 2), (2, 2)]:
        runs[i, d] = build(name, init_seed=i, data_seed=d)
        torch_states[i, d] = torch.get_rng_state()  # where dropout and gradient noise will draw from
    weights = {key: initial_weights(run) for key, run in runs.items()}
    inputs = {key: first_training_input(name, run) for key, run in runs.items()}

    assert same_weights(weights[1, 1], weights[1, 2]), "the same init_seed must give the same initial weights"
    assert inputs[1, 1] != inputs[1, 2], "a different data_seed must give a different first input"
    assert not same_weights(weights[1, 2], weights[2, 2]), "a different init_seed must give different weights"
    assert inputs[1, 2] == inputs[2, 2], "the same data_seed must give the same first input"
    # dropout and gradient noise: torch's generator after the build is the data_seed run's, whatever the init.
    assert torch.equal(torch_states[1, 2], torch_states[2, 2])
    assert not torch.equal(torch_states[1, 1], torch_states[1, 2])


@pytest.mark.parametrize("name", sorted(TRAINERS))
def test_a_run_with_split_seeds_resumes_exactly(name, tmp_path):
    _, train, config = TRAINERS[name]
    cfg = config(init_seed=5, data_seed=6)
    full, reports, saved = collect_keeping_checkpoint(train, cfg, 20, tmp_path)
    resumed, resumed_reports = collect(train, cfg, resume_from=str(saved))
    assert without_timing(resumed_reports) == without_timing([r for r in reports if r["step"] > 20])
    assert resumed.eval_table == full.eval_table
    with pytest.raises(ValueError, match="different `data_seed`"):
        train(config(init_seed=5, data_seed=7), resume_from=str(saved))


@pytest.mark.parametrize("name", sorted(TRAINERS))
@pytest.mark.parametrize("field", ["init_seed", "data_seed"])
def test_a_seed_outside_what_torch_accepts_names_its_field(name, field):
    with pytest.raises(ConfigError, match=f"`{field}` is -1; use an integer in"):
        TRAINERS[name][2](**{field: -1})
