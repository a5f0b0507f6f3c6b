"""Learning targets, action coding, controller and curriculum against small hand-computed cases."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rl_tasks.agents import ActionCodec, Controller, ControllerConfig
from rl_tasks.config import ConfigError, RLConfig
from rl_tasks.curriculum import LsaeCurriculum
from rl_tasks.learners.base import symbol_loss
from rl_tasks.learners.qlearning import q_loss, q_penalty, q_targets
from rl_tasks.learners.reinforce import reinforce_loss, returns_to_go

# One episode of three steps: a correct write, a move, a correct write that finishes the target.
REWARDS = np.array([1.0, 0.0, 1.0])
V = np.array([2.0, 1.0, 1.0, 0.0])  # targets still due before each step, and after the last
MAX_Q = np.array([0.9, 0.8, 0.7, 0.0])  # max_a Q^(s_t, a) at each state
CUT = np.array([False, True, False])  # step 1's action was exploratory


def test_dynamic_one_step_target_is_the_lsae_formula():
    # Q^(s_t, a_t) <- r_t / V_t + (V_{t+1} / V_t) max Q^(s_{t+1}); nothing after the terminal step.
    targets = q_targets(REWARDS, V, MAX_Q, CUT, bootstrap=False, gamma=None, watkins=False)
    assert targets == pytest.approx([(1 + 1 * 0.8) / 2, (0 + 1 * 0.7) / 1, 1 / 1])


def test_dynamic_watkins_sums_greedy_rewards_and_bootstraps_at_the_exploratory_step():
    targets = q_targets(REWARDS, V, MAX_Q, CUT, bootstrap=False, gamma=None, watkins=True)
    # t=0: the trace is cut at step 1 (exploratory): (r0 + V1 * maxQ^1) / V0.
    # t=1: its own action may be exploratory; step 2 is greedy, so r1 + r2 to the end: (0 + 1) / V1.
    assert targets == pytest.approx([(1 + 0.8) / 2, 1.0, 1.0])


def test_fixed_discount_watkins_and_one_step():
    watkins = q_targets(REWARDS, V, MAX_Q, CUT, bootstrap=False, gamma=0.5, watkins=True)
    assert watkins == pytest.approx([1 + 0.5 * 0.8, 0 + 0.5 * 1, 1])
    one_step = q_targets(REWARDS, V, MAX_Q, CUT, bootstrap=False, gamma=0.5, watkins=False)
    assert one_step == pytest.approx([1 + 0.5 * 0.8, 0 + 0.5 * 0.7, 1])


def test_truncated_episode_bootstraps_from_its_final_state():
    max_q = np.array([0.0, 0.0, 0.0, 0.25])
    values_left = np.array([4.0, 3.0, 3.0, 2.0])
    targets = q_targets(REWARDS, values_left, max_q, np.zeros(3, bool), bootstrap=True, gamma=None, watkins=True)
    # No cut: every target runs to the end and adds V_3 * maxQ^_3 = 0.5.
    assert targets == pytest.approx([(2 + 0.5) / 4, (1 + 0.5) / 3, (1 + 0.5) / 3])


@settings(max_examples=50, deadline=None)
@given(st.lists(st.sampled_from([-1.0, -0.5, 0.0, 1.0]), min_size=1, max_size=12), st.floats(0.1, 1.0))
def test_watkins_without_exploration_is_the_discounted_return(rewards, gamma):
    rewards = np.array(rewards)
    max_q = np.random.default_rng(0).random(len(rewards) + 1)
    targets = q_targets(rewards, None, max_q, np.zeros(len(rewards), bool), bootstrap=False, gamma=gamma, watkins=True)
    assert targets == pytest.approx(returns_to_go(rewards, gamma))


@settings(max_examples=50, deadline=None)
@given(st.lists(st.booleans(), min_size=2, max_size=10))
def test_dynamic_watkins_with_every_step_cut_is_one_step(cut):
    steps = len(cut)
    rng = np.random.default_rng(steps)
    rewards = rng.integers(0, 2, size=steps).astype(float)
    values_left = np.concatenate([np.arange(steps + 2, 2, -1), [2.0]]).astype(float)
    max_q = rng.random(steps + 1)
    everywhere = np.ones(steps, bool)
    watkins = q_targets(rewards, values_left, max_q, everywhere, bootstrap=True, gamma=None, watkins=True)
    one_step = q_targets(rewards, values_left, max_q, np.array(cut), bootstrap=True, gamma=None, watkins=False)
    expected = rewards / values_left[:-1] + values_left[1:] / values_left[:-1] * max_q[1:]
    assert watkins == pytest.approx(expected) and one_step == pytest.approx(expected)


def test_returns_to_go():
    assert returns_to_go(np.array([1.0, 0.0, 2.0]), 0.5) == pytest.approx([1.5, 1.0, 2.0])


def test_losses_on_tiny_tensors():
    choice_q = torch.tensor([[[0.5, 0.1]], [[0.2, 0.9]]])  # (T=2, B=1, C=2)
    choices = torch.tensor([[0], [1]])
    targets = torch.tensor([[1.0], [0.9]])
    mask = torch.tensor([[1.0], [0.0]])  # the second step is padding
    assert float(q_loss(choice_q, choices, targets, mask)) == pytest.approx(0.5 * 0.25)
    assert float(q_penalty(choice_q, mask)) == pytest.approx((0.6 - 1.0) ** 2)
    logits = torch.zeros(2, 1, 3)
    labels = torch.tensor([[2], [-1]])
    assert float(symbol_loss(logits, labels, torch.tensor([[1.0], [0.0]]))) == pytest.approx(np.log(3))


def test_reinforce_loss_pushes_up_actions_with_positive_advantage():
    logits = torch.zeros(1, 1, 2, requires_grad=True)
    loss, parts = reinforce_loss(
        logits,
        torch.tensor([[1]]),
        torch.tensor([[2.0]]),
        torch.tensor([[0.5]], requires_grad=True),
        torch.ones(1, 1),
        normalize=False,
        entropy_coef=0.0,
    )
    loss.backward()
    assert logits.grad[0, 0, 1] < 0 < logits.grad[0, 0, 0]  # gradient descent raises logit 1
    assert parts["train/value_loss"] == pytest.approx(1.5**2)


@pytest.mark.parametrize("split", [False, True])
def test_action_codec_round_trips(split):
    codec = ActionCodec(moves=4, base=3, split=split)
    seen = set()
    for choice in range(codec.n_choices):
        action = codec.decode(choice, symbol=2)
        move, write, symbol = action
        assert 0 <= move < 4 and write in (0, 1) and 0 <= symbol < 3
        assert 0 <= codec.encode_prev(action) < codec.start_token
        seen.add(action)
    assert len(seen) == codec.n_choices  # no two choices give the same env action
    assert codec.n_choices == (8 if split else 16)


@pytest.mark.parametrize("core", ["gru", "lstm", "ff"])
def test_step_by_step_acting_matches_the_sequence_forward(core):
    torch.manual_seed(0)
    codec = ActionCodec(moves=2, base=5, split=True)
    model = Controller(ControllerConfig(n_obs=6, codec=codec, core=core, hidden=8, value_head=True))
    obs = torch.tensor([[0, 3], [5, 1], [2, 2]])  # (T=3, B=2)
    prev = torch.tensor([[codec.start_token] * 2, [1, 4], [7, 0]])
    full, _ = model(obs, prev)
    state = None
    for t in range(3):
        out, state = model.step(obs[t], prev[t], state)
        torch.testing.assert_close(out.choice, full.choice[t])
        torch.testing.assert_close(out.symbol, full.symbol[t])
        torch.testing.assert_close(out.value, full.value[t])


def test_lsae_curriculum_advances_on_greedy_accuracy_only():
    curriculum = LsaeCurriculum(start=6, step=4, spread=4, accuracy=0.995, window=5, max_length=14)
    rng = np.random.default_rng(0)
    assert {curriculum.sample_length(rng) for _ in range(200)} == {2, 3, 4, 5, 6}
    for _ in range(20):
        assert not curriculum.record(solved=True, greedy=False)  # exploratory episodes do not count
    for _ in range(4):
        assert not curriculum.record(solved=True, greedy=True)
    assert curriculum.record(solved=True, greedy=True) and curriculum.complexity == 10
    for _ in range(4):
        curriculum.record(solved=True, greedy=True)
    assert not curriculum.record(solved=False, greedy=True) and curriculum.complexity == 10
    for _ in range(5):
        curriculum.record(solved=True, greedy=True)
    assert curriculum.complexity == 14 and curriculum.at_max
    for _ in range(5):
        assert not curriculum.record(solved=True, greedy=True)


def test_config_validation_names_key_and_source():
    with pytest.raises(ConfigError, match=r"run.yaml: `env` is 'Cpy'; use one of Copy"):
        RLConfig.from_dict({"env": "Cpy"}, source="run.yaml")
    with pytest.raises(ConfigError, match="unknown key `learning_rate`"):
        RLConfig.from_dict({"learning_rate": 0.1})
    with pytest.raises(ConfigError, match="`hidden` should be an integer"):
        RLConfig.from_dict({"hidden": "64"})
    with pytest.raises(ConfigError, match="`discount` is '1.5'"):
        RLConfig.from_dict({"discount": 1.5})
    with pytest.raises(ConfigError, match="never end"):
        RLConfig.from_dict({"max_episodes": 0})
    assert RLConfig.from_dict({"discount": 0.9}).gamma == 0.9
    assert RLConfig().gamma is None
    cfg = RLConfig.from_dict({"env": "Reverse", "eval_lengths": [10, 20]})
    assert RLConfig.from_dict(cfg.to_dict()) == cfg and cfg.to_dict()["eval_lengths"] == [10, 20]
