"""bench/rl_episodes.py end to end with a tiny budget: one row per task and learner, rates from the trainer."""

from bench import rl_episodes


def test_rl_episodes_prints_a_row_per_task_and_learner(capsys):
    rl_episodes.main(["--seconds", "0.3", "--tasks", "Copy", "Reverse", "--agents", "qlearning"])
    lines = capsys.readouterr().out.splitlines()
    rows = [line.split() for line in lines[2:]]
    assert [row[:2] for row in rows] == [["Copy", "qlearning"], ["Reverse", "qlearning"]]
    for row in rows:
        episodes_per_s, env_steps_per_s, episodes = float(row[2]), float(row[3]), int(row[4])
        assert episodes > 0 and episodes_per_s > 0
        assert env_steps_per_s >= episodes_per_s  # every episode takes at least one step
