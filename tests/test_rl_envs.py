"""The algorithmic environments against hand-worked episodes: G19's rewards, termination, time limits and
curriculum; the LSAE layouts; Gymnasium's checker; the scripted perfect policies."""

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import rl_tasks
from rl_tasks.envs import END, MAX_EPISODE_STEPS, make_env
from rl_tasks.oracle import episodes_to_solve, run_episode, scripted_policy

LEFT, RIGHT, UP, DOWN = 0, 1, 2, 3
WRITE, NO = 1, 0


def play(env, actions):
    """Step through `actions`; returns (observations after each step, rewards, terminated flags)."""
    observations, rewards, ends = [], [], []
    for action in actions:
        obs, reward, terminated, truncated, _ = env.step(action)
        assert not truncated
        observations.append(int(obs))
        rewards.append(reward)
        ends.append(terminated)
    return observations, rewards, ends


@pytest.mark.parametrize("name", rl_tasks.ENV_NAMES)
def test_every_env_passes_gymnasiums_checker(name):
    env = gym.make(f"rl_tasks/{name}-v0", render_mode="ansi")
    assert env.spec.max_episode_steps == MAX_EPISODE_STEPS
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the checker reports problems as warnings
        check_env(env.unwrapped)


def test_copy_rewards_each_correct_write_and_ends_when_the_target_is_written():
    env = make_env("Copy", time_limit=False)
    obs, _ = env.reset(seed=0, options={"input_data": [0, 1, 2]})
    assert obs == 0 and env.target == [0, 1, 2]
    observations, rewards, ends = play(env, [(RIGHT, WRITE, 0), (RIGHT, WRITE, 1), (RIGHT, WRITE, 2)])
    assert observations == [1, 2, 5]  # 5 = blank, off the tape
    assert rewards == [1.0, 1.0, 1.0] and ends == [False, False, True]
    assert env.episode_total_reward == 3.0


def test_a_wrong_write_costs_half_and_ends_the_episode():
    env = make_env("Copy", time_limit=False)
    env.reset(seed=0, options={"input_data": [3, 4]})
    _, rewards, ends = play(env, [(RIGHT, WRITE, 3), (RIGHT, WRITE, 0)])
    assert rewards == [1.0, -0.5] and ends == [False, True]


def test_symbol_is_ignored_without_write_and_moving_left_reads_the_blank():
    env = make_env("Copy", time_limit=False)
    env.reset(seed=0, options={"input_data": [2, 2]})
    observations, rewards, _ = play(env, [(LEFT, NO, 4), (RIGHT, NO, 3)])
    assert observations == [5, 2] and rewards == [0.0, 0.0]
    assert env.write_head_position == 0 and env.read_head_position == 0


def test_time_limit_is_input_plus_target_plus_four_and_replaces_the_last_reward():
    env = make_env("Copy", time_limit=False)
    env.reset(seed=0, options={"input_data": [1, 2]})
    assert env.time_limit == 2 + 2 + 4
    _, rewards, ends = play(env, [(LEFT, NO, 0), (RIGHT, NO, 0)] * 4)  # 8 idle steps: time == limit, still on
    assert rewards == [0.0] * 8 and not any(ends)
    _, rewards, ends = play(env, [(RIGHT, WRITE, 1)])  # correct write on step 9, but time is up
    assert rewards == [-1.0] and ends == [True]


def test_registered_env_truncates_at_200_steps_only_when_the_env_allows_that_long():
    env = make_env("Copy")
    env.reset(seed=0, options={"length": 300})
    for _ in range(199):
        _, _, terminated, truncated, _ = env.step((RIGHT, NO, 0))
        assert not (terminated or truncated)
    _, _, terminated, truncated, _ = env.step((RIGHT, NO, 0))
    assert truncated and not terminated


def test_duplicated_input_targets_every_other_symbol_and_rounds_odd_sizes_down():
    env = make_env("DuplicatedInput", time_limit=False)
    env.reset(seed=0, options={"input_data": [3, 3, 1, 1]})
    assert env.target == [3, 1]
    _, rewards, ends = play(env, [(RIGHT, WRITE, 3), (RIGHT, NO, 0), (RIGHT, WRITE, 1)])
    assert rewards == [1.0, 0.0, 1.0] and ends[-1]
    env.reset(seed=0, options={"length": 5})
    assert len(env.input_data) == 4 and env.input_data[0] == env.input_data[1]
    env.reset(seed=0, options={"length": 1})
    assert len(env.input_data) == 2


def test_reverse_hand_worked_episode():
    env = make_env("Reverse", time_limit=False)
    env.reset(seed=0, options={"input_data": [0, 1, 1]})
    assert env.target == [1, 1, 0] and env.time_limit == 10
    actions = [(RIGHT, NO, 0)] * 3 + [(LEFT, NO, 0), (LEFT, WRITE, 1), (LEFT, WRITE, 1), (LEFT, WRITE, 0)]
    observations, rewards, ends = play(env, actions)
    assert observations[:4] == [1, 1, 2, 1]  # 2 = blank for base 2
    assert rewards == [0.0] * 4 + [1.0] * 3 and ends == [False] * 6 + [True]


def test_repeat_copy_target_and_scripted_episode():
    env = make_env("RepeatCopy", time_limit=False)
    env.reset(seed=0, options={"input_data": [0, 1]})
    assert env.target == [0, 1, 1, 0, 0, 1] and env.time_limit == 12
    total, steps, solved = run_episode(env, scripted_policy("RepeatCopy", env), options={"input_data": [0, 1]})
    assert (total, steps, solved) == (6.0, 8, True)


def test_reversed_addition_hand_worked_episode():
    env = make_env("ReversedAddition", time_limit=False)
    # Columns, least significant first: (1, 2) and (2, 2) in base 3: 1+2 = 10, 2+2+1 = 12 -> digits 0, 2, carry 1.
    env.reset(seed=0, options={"input_data": [[1, 2], [2, 2]]})
    assert env.target == [0, 2, 1] and env.time_limit == 2 * 2 + 4 and env.read_head_position == (0, 0)
    actions = [(DOWN, NO, 0), (RIGHT, WRITE, 0), (UP, NO, 0), (RIGHT, WRITE, 2), (RIGHT, WRITE, 1)]
    observations, rewards, ends = play(env, actions)
    assert observations == [2, 2, 2, 3, 3]
    assert rewards == [0.0, 1.0, 0.0, 1.0, 1.0] and ends[-1]


def test_three_row_addition_times_out_under_g19_and_is_solvable_with_the_corrected_limit():
    data = [[2, 1, 0], [1, 1, 1], [0, 0, 2], [2, 2, 2], [1, 0, 1]]
    g19 = make_env("ReversedAddition3", time_limit=False)
    total, steps, solved = run_episode(g19, scripted_policy("ReversedAddition3", g19), options={"input_data": data})
    assert not solved and steps == 2 * 5 + 4 + 1 and g19.last_reward == -1.0  # 3 steps per column needed
    fixed = make_env("ReversedAddition3", time_limit=False, corrected_time_limit=True)
    total, steps, solved = run_episode(fixed, scripted_policy("ReversedAddition3", fixed), options={"input_data": data})
    assert solved and total == len(fixed.target) and fixed.time_limit == 3 * 5 + 4


def test_curriculum_promotes_after_ten_good_episodes_and_clears_its_window():
    env = make_env("Copy", time_limit=False)
    policy = scripted_policy("Copy", env)
    run_episode(env, policy, seed=0)
    for _ in range(9):
        run_episode(env, policy)
    assert env.min_length == 2 and len(env.reward_shortfalls) == 9  # the first reset records nothing
    env.reset()
    assert env.min_length == 3 and env.reward_shortfalls == []


def test_one_bad_episode_in_the_window_blocks_promotion():
    env = make_env("Copy", time_limit=False)
    policy = scripted_policy("Copy", env)
    run_episode(env, policy, seed=0)
    env.reset()
    env.step((RIGHT, WRITE, (env.target[0] + 1) % 5))  # shortfall -0.5 - len(target) < -1
    for _ in range(9):
        run_episode(env, policy)
    env.reset()
    assert env.min_length == 2
    assert min(env.reward_shortfalls) < -1 and len(env.reward_shortfalls) == 10


def test_reverse_needs_fifty_perfect_episodes_and_stops_at_thirty():
    env = make_env("Reverse", time_limit=False)
    assert env.last == 50 and env.MIN_REWARD_SHORTFALL_FOR_PROMOTION == -0.1 and env.min_length == 1
    policy = scripted_policy("Reverse", env)
    run_episode(env, policy, seed=0)
    for _ in range(49):
        run_episode(env, policy)
    env.reset()
    assert env.min_length == 2
    env.min_length = 30
    for _ in range(60):
        run_episode(env, policy)
    assert env.min_length == 30


def test_input_length_is_min_length_plus_zero_to_two_and_seeding_repeats_inputs():
    env = make_env("Copy", time_limit=False)
    env.min_length = 7
    lengths = set()
    for seed in range(60):
        env.reset(seed=seed)
        lengths.add(len(env.input_data))
    assert lengths == {7, 8, 9}
    env.reset(seed=3)
    first = list(env.input_data)
    env.reset(seed=3)
    assert env.input_data == first
    env.reset(seed=4)
    assert env.input_data != first


def test_reset_options_are_checked():
    env = make_env("Copy", time_limit=False)
    with pytest.raises(ValueError, match="outside range"):
        env.reset(options={"input_data": [0, 7]})
    with pytest.raises(ValueError, match="exclude each other"):
        env.reset(options={"input_data": [0], "length": 3})
    with pytest.raises(ValueError, match="not known"):
        env.reset(options={"lenght": 3})
    with pytest.raises(ValueError, match="not in"):
        env.reset(seed=0)
        env.step((2, 0, 0))


def test_curriculum_state_round_trips():
    env = make_env("Copy", time_limit=False)
    policy = scripted_policy("Copy", env)
    for episode in range(13):
        run_episode(env, policy, seed=0 if episode == 0 else None)
    state = env.curriculum_state()
    other = make_env("Copy", time_limit=False)
    other.load_curriculum_state(state)
    other.np_random.bit_generator.state = env.np_random.bit_generator.state
    env.reset()
    other.reset()
    assert (other.min_length, other.reward_shortfalls, other.input_data) == (
        env.min_length,
        env.reward_shortfalls,
        env.input_data,
    )


def test_render_shows_head_output_and_target():
    env = make_env("Copy", time_limit=False, render_mode="ansi")
    env.reset(seed=0, options={"input_data": [0, 1, 2]})
    env.step((RIGHT, WRITE, 0))
    text = env.render()
    assert "Observation Tape    :        A [B] C " in text
    assert "Output Tape         :        A    " in text and "Targets             :        A  B  C " in text
    assert "Current reward      :   1.000" in text and "prediction: A" in text
    env.step((RIGHT, WRITE, 4))
    assert "!E!" in env.render()  # the wrong symbol is shown


# --- LSAE grids ------------------------------------------------------------------------------------------------
def test_lsae_addition_layout_and_hand_worked_episode():
    env = make_env("Addition", time_limit=False)
    grid = env.layout([[1, 2], [3, 9]])  # 12 + 39 = 51
    blank, end = env.base, env.base + 1 + END
    assert grid == [[1, 3], [2, 9], [blank, blank], [end, end]]
    obs, _ = env.reset(seed=0, options={"input_data": grid})
    assert env.read_head_position == (1, 0) and obs == 2  # top row, least significant digit
    assert env.target == [1, 5, 0]  # LSAE writes the final carry even when it is 0
    actions = [(DOWN, NO, 0), (LEFT, WRITE, 1), (UP, NO, 0), (LEFT, WRITE, 5), (LEFT, WRITE, 0)]
    observations, rewards, ends = play(env, actions)
    assert observations == [9, 3, 1, blank, blank]
    assert rewards == [0.0, 1.0, 0.0, 1.0, 1.0] and ends[-1]


def test_lsae_multiplication_and_walk_targets():
    mul = make_env("SingleDigitMultiplication", time_limit=False)
    grid = mul.layout([[0, 7], [3, 8]])  # 38 * 7 = 266
    mul.reset(seed=0, options={"input_data": grid})
    assert mul.target == [6, 6, 2] and mul._get_obs() == 7  # two digits in, three out (final carry 2)
    walk = make_env("Walk", time_limit=False)
    down, end = walk.base + 1 + 3, walk.base + 1 + END
    # Row 0: 4 5 v; the arrow turns the walk down its column: 7, 8, then END.
    grid = [[4, 0, 0, 0], [5, 0, 0, 0], [down, 7, 8, end]]
    walk.reset(seed=0, options={"input_data": grid})
    assert walk.target == [7, 8] and walk.read_head_position == (0, 0)
    _, rewards, ends = play(walk, [(RIGHT, NO, 0), (RIGHT, NO, 0), (DOWN, NO, 0), (DOWN, WRITE, 7), (DOWN, WRITE, 8)])
    assert rewards == [0.0, 0.0, 0.0, 1.0, 1.0] and ends[-1]


def test_carry_free_inputs_have_no_carry():
    for name in ("ReversedAddition3", "Addition3"):
        env = make_env(name, time_limit=False)
        for seed in range(20):
            env.reset(seed=seed, options={"length": 6, "carry_free": True})
            columns = env.input_data if name.startswith("Reversed") else env.input_data[:-2]
            assert all(sum(column) < env.base for column in columns)


@pytest.mark.parametrize("name", rl_tasks.ENV_NAMES)
def test_scripted_policy_is_perfect_on_short_and_long_inputs(name):
    kwargs = {"corrected_time_limit": True} if name == "ReversedAddition3" else {}
    env = make_env(name, time_limit=False, **kwargs)
    policy = scripted_policy(name, env)
    for length in (1, 2, 5, 60):
        for seed in range(3):
            total, _, solved = run_episode(env, policy, seed=seed, options={"length": length})
            assert solved and total == len(env.target)


def test_perfect_policy_floor_matches_the_reference():
    # Reference (10 seeds): Copy ~175 and DuplicatedInput ~109 episodes before the solving 100-episode window.
    # Copy promotes every 10 episodes (2 + 23 levels to reach mean 25); anything else shows a semantic slip.
    copy = [episodes_to_solve("Copy", seed) for seed in range(3)]
    dup = [episodes_to_solve("DuplicatedInput", seed) for seed in range(3)]
    assert np.mean(copy) == pytest.approx(175, abs=5) and np.mean(dup) == pytest.approx(109, abs=5)
