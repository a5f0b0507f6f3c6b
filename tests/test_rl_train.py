"""The RL trainer end to end with tiny budgets: determinism, exact resume, budgets, the CLIs, and one small agent
that learns Copy."""

import json
import math

import pytest
from tiny import collect, collect_keeping_checkpoint, rl_config, without_timing

from rl_tasks.config import RLConfig
from rl_tasks.train import Trainer, main, train
from rl_tasks.watch import main as watch_main

tiny_config = rl_config


def run_and_collect(cfg, **kwargs):
    return collect(train, cfg, **kwargs)


@pytest.mark.parametrize("agent", ["qlearning", "reinforce"])
def test_same_seed_gives_bit_identical_metrics(agent):
    cfg = tiny_config(agent=agent)
    first, reports_a = run_and_collect(cfg)
    second, reports_b = run_and_collect(cfg)
    assert without_timing(reports_a) == without_timing(reports_b)
    assert first.eval_table == second.eval_table and len(reports_a) == 3 + 1  # every 10 episodes, then the end
    _, reports_c = run_and_collect(cfg.replace(seed=1))
    assert without_timing(reports_c) != without_timing(reports_a)


def test_resume_continues_bit_identically(tmp_path):
    cfg = tiny_config(max_episodes=60, curriculum="lsae", lsae_window=5, lsae_start=3, stop_on_success=False)
    full, reports, saved = collect_keeping_checkpoint(train, cfg, 20, tmp_path)
    assert (tmp_path / "live" / "state.pt").is_file()
    resumed, resumed_reports = run_and_collect(cfg, resume_from=str(saved))
    assert without_timing(resumed_reports) == without_timing([r for r in reports if r["step"] > 20])
    assert resumed.steps == full.steps == 60 and resumed.eval_table == full.eval_table


def test_resume_refuses_a_checkpoint_of_another_run(tmp_path):
    train(tiny_config(max_episodes=10), checkpoint_dir=str(tmp_path))
    with pytest.raises(ValueError, match="different `hidden`"):
        train(tiny_config(hidden=8), resume_from=str(tmp_path))


def test_every_env_and_agent_variant_runs(tmp_path):
    variants = [
        dict(env="ReversedAddition3", controller="lstm", output_mode="joint", corrected_time_limit=True),
        dict(env="Walk", controller="ff", q_target="one_step", discount=0.9, q_penalty=0.01),
        dict(env="Addition3", agent="reinforce", baseline=False, easy_start=True, curriculum="lsae"),
        dict(env="SingleDigitMultiplication", exploration="constant", optimizer="sgd", lr=0.1),
        dict(env="RepeatCopy", exploration="linear", epsilon_decay_episodes=5, agent="reinforce", output_mode="joint"),
    ]
    for variant in variants:
        result = train(tiny_config(max_episodes=6, eval_every=0, **variant))
        assert result.stop_reason == "max_episodes" and result.steps == 6
        assert [row["length"] for row in result.eval_table] == [6]


def test_budgets_and_no_progress_rule():
    assert train(tiny_config(max_episodes=0, max_minutes=0.0005)).stop_reason == "max_minutes"
    stalled = train(tiny_config(env="Reverse", max_episodes=200, patience_episodes=15))
    assert stalled.stop_reason == "no_progress" and stalled.steps == 15  # Reverse needs 50 perfect episodes


def test_floor_budget_stops_at_the_multiple_of_the_perfect_policys_episodes_plus_the_window():
    from rl_tasks.oracle import episodes_to_solve

    floor = episodes_to_solve("DuplicatedInput", 3)  # the run's data seed
    cfg = tiny_config(env="DuplicatedInput", seed=3, max_episodes=10**6, floor_budget=0.5, stop_on_success=False)
    trainer = Trainer(cfg, report=None, checkpoint_dir=None)
    assert trainer.floor_budget_episodes == math.ceil(0.5 * floor) + 100
    trainer.progress.step = trainer.floor_budget_episodes - 1
    assert trainer.stop_reason() is None
    trainer.progress.step += 1
    assert trainer.stop_reason() == "max_episodes"
    with pytest.raises(ValueError, match="corrected_time_limit"):  # no perfect policy solves G19's 3-row addition
        Trainer(tiny_config(env="ReversedAddition3", floor_budget=10), report=None, checkpoint_dir=None)


def test_solved_rule_counts_episodes_before_the_window():
    trainer = Trainer(tiny_config(reward_threshold=1.0), report=None, checkpoint_dir=None)
    episode = trainer.play_episode()
    episode.total_reward = 1.0
    trainer.progress.recent_rewards = [1.0] * 99
    trainer.progress.step = 149
    trainer.record(episode)
    assert trainer.progress.steps_to_success == 50  # the solving window is episodes 51..150
    assert trainer.stop_reason() == "success"


def test_divergence_is_reported_with_its_episode():
    result = train(tiny_config(optimizer="sgd", lr=1e30, max_episodes=30, eval_every=0))
    assert result.stop_reason == "diverged" and result.diverged_step is not None
    assert result.eval_table == []


def test_cli_trains_and_prints_a_json_summary(tmp_path, capsys):
    code = main(
        ["--env", "Copy", "--agent", "qlearning", "--seed", "3", "--hidden", "8", "--max-episodes", "12",
         "--report-every", "6", "--eval-lengths", "5", "--eval-examples", "2", "--checkpoint-dir", str(tmp_path)]
    )  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0
    summary = json.loads(captured.out)
    assert summary["config"]["seed"] == 3 and summary["steps"] == 12 and summary["stop_reason"] == "max_episodes"
    assert "episode      6" in captured.err
    assert watch_main(["--checkpoint", str(tmp_path), "--length", "4"]) == 0
    assert "Observation Tape" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--env", "Copyy"], "`env` is 'Copyy'"),
        (["--hidden", "many"], "invalid int value"),
        (["--epsilon", "2"], "`epsilon` is 2.0"),
        (["--resume", "/nonexistent"], "no state.pt"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_status_2(argv, message, capsys):
    assert main([*argv, "--max-episodes", "1", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_cli_reads_a_yaml_config_and_flags_override_it(tmp_path, capsys):
    path = tmp_path / "run.yaml"
    path.write_text("env: Reverse\nhidden: 8\nmax_episodes: 3\nbogus: 1\n")
    assert main(["--config", str(path)]) == 2
    assert f"{path}: unknown key `bogus`" in capsys.readouterr().err
    path.write_text("env: Reverse\nhidden: 8\nmax_episodes: 3\neval_lengths: [4]\neval_examples: 1\n")
    assert main(["--config", str(path), "--max-episodes", "2", "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["config"]["env"] == "Reverse" and summary["steps"] == 2


def test_watch_rejects_a_bad_checkpoint(tmp_path, capsys):
    assert watch_main(["--checkpoint", str(tmp_path)]) == 2
    assert "no state.pt" in capsys.readouterr().err


def test_small_agent_solves_short_copy():
    # Copy to a 100-episode mean reward of 10 (inputs of about 10 symbols), then the greedy policy generalises.
    cfg = RLConfig.from_dict(
        {"env": "Copy", "reward_threshold": 10.0, "max_episodes": 3000, "eval_lengths": [40], "eval_examples": 10}
    )
    result = train(cfg)
    assert result.success and result.stop_reason == "success"
    assert result.steps == result.steps_to_success + 100 and result.episodes_to_solve == result.steps_to_success
    assert result.eval_table[0]["seq_accuracy"] >= 0.9


@pytest.mark.parametrize("agent", ["qlearning", "reinforce"])
def test_watch_replays_each_learners_checkpoint(tmp_path, agent, capsys):
    # The controller rebuilt from the saved config must have the checkpoint's heads (REINFORCE: a value head).
    train(tiny_config(agent=agent, max_episodes=6, eval_every=0), checkpoint_dir=str(tmp_path))
    capsys.readouterr()
    assert watch_main(["--checkpoint", str(tmp_path), "--length", "3"]) == 0
    assert "reward" in capsys.readouterr().out
