"""The `rl` trainer in sweeps: the shipped RL pool validates, the sweep sections map onto RLConfig fields, misuse
of the success rule fails clearly, and a tiny RL pool runs end to end through Ray Tune into MLflow with the
real trainer. Also the one-line `make report` hint printed at the end of a sweep."""

from __future__ import annotations

import dataclasses
import json
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from rl_tasks.config import RLConfig
from sweeps.cli import main
from sweeps.expand import load_sweep
from sweeps.runner import report_hint, run_sweep
from sweeps.schema import CONFIG_DIR, SweepConfig
from sweeps.trainers import RL_OWNERS, TRAINERS, rl_owned_fields

REPO = Path(__file__).resolve().parents[1]
RL_TAGS = {"seed", "env", "agent", "controller", "output_mode", "q_target", "discount", "curriculum", "stop_reason"}


def rl_values(**changes: object) -> dict:
    """rl_qlearning.yaml as a dict, with top-level keys replaced (None deletes a key)."""
    values = yaml.safe_load((CONFIG_DIR / "rl_qlearning.yaml").read_text())
    for key, value in changes.items():
        if value is None:
            values.pop(key, None)
        else:
            values[key] = value
    return values


# --- the shipped pool ------------------------------------------------------------------------------------
def test_rl_qlearning_expands_to_the_promised_pool(capsys, isolated_tracking):
    sweep = load_sweep("rl_qlearning")
    assert sweep.trainer.name == "rl" and sweep.trainer.step_unit == "episodes"
    science = sweep.config.axes.science
    assert {"Copy", "DuplicatedInput"} <= set(science["env"]) and set(science["q_target"]) == {"watkins", "one_step"}
    assert len(sweep.config.axes.nuisance["seed"]) >= 4
    assert len(sweep.trials) == len(science["env"]) * 2 * len(sweep.config.axes.nuisance["seed"])
    for trial in sweep.trials:
        run = trial.run_config
        assert set(run) == {f.name for f in dataclasses.fields(RLConfig)}, "a full RLConfig per trial"
        assert (run["max_episodes"], run["max_minutes"], run["patience_episodes"]) == (10000, 0.0, 2000)
        assert (run["reward_threshold"], run["eval_lengths"]) == (0.0, [100])  # gym's thresholds; test at 100
        assert (run["threads"], run["device"], run["agent"]) == (1, "cpu", "qlearning")
        assert (run["env"], run["q_target"]) == (trial.cell["env"], trial.cell["q_target"])
    assert main(["run", "rl_qlearning", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "trainer rl, 24 trials = 6 cells x 4 nuisance settings" in out
    assert "budget 10000 episodes" in out and "hopeless after 2000 episodes without progress" in out
    assert "100-episode mean reward >= each env's registered threshold" in out and "length 100" in out
    assert not (isolated_tracking / "env-default.db").exists(), "a dry run records nothing"


def test_rl_qlearning_header_says_what_it_studies_and_how_long_it_takes():
    header = [line for line in (CONFIG_DIR / "rl_qlearning.yaml").read_text().splitlines() if line.startswith("#")]
    text = " ".join(header)
    assert len(header) >= 4 and "Science axes" in text and "minutes on 2 CPU cores" in text


# --- owned fields ----------------------------------------------------------------------------------------
def sweep_config(**changes: object) -> SweepConfig:
    return SweepConfig.model_validate(rl_values(**changes))


def test_rl_owned_fields_map_the_sections_onto_rlconfig_fields():
    config = sweep_config(
        budget={"steps": 500, "minutes": 2.5},
        success={"metric": "reward_mean100", "threshold": 12.5, "length": 40},
        stopping={"patience_steps": 300},
        resources={"cpu": 2.7, "gpu": 0.5},
    )
    assert rl_owned_fields(config) == {
        "max_episodes": 500,
        "max_minutes": 2.5,
        "reward_threshold": 12.5,
        "eval_lengths": [40],
        "patience_episodes": 300,
        "threads": 2,  # one torch thread per whole CPU of the trial
        "device": "cuda",  # any GPU share trains on CUDA
    }
    minutes_only = rl_owned_fields(sweep_config(budget={"minutes": 1}, stopping=None))
    assert (minutes_only["max_episodes"], minutes_only["max_minutes"], minutes_only["patience_episodes"]) == (0, 1, 0)
    assert minutes_only["device"] == "cpu" and minutes_only["threads"] == 1


def test_rl_owned_fields_are_real_rlconfig_fields_with_an_owner():
    fields = {f.name for f in dataclasses.fields(RLConfig)}
    owned = set(rl_owned_fields(sweep_config()))
    assert owned <= fields and owned | {"seed"} == set(RL_OWNERS)
    assert set(TRAINERS["rl"].tag_fields) <= fields
    RLConfig.from_dict(rl_owned_fields(sweep_config()), source="test")  # the mapping is a valid config


# --- misuse fails clearly --------------------------------------------------------------------------------
SUCCESS = {"metric": "reward_mean100", "threshold": 0, "length": 100}
MISUSE = [
    (
        "neuralgpu success metric",
        rl_values(success={"threshold": 0.01, "length": 100}),
        ["`success.metric` is 'seq_error'", "gym's rule", "set `success.metric: reward_mean100`"],
    ),
    ("hold", rl_values(success={**SUCCESS, "hold": 3}), ["`success.hold` is 3", "remove `success.hold`"]),
    ("gate", rl_values(success={**SUCCESS, "gate": 0.15}), ["`success.gate` is 0.15", "remove `success.gate`"]),
    ("confirm", rl_values(success={**SUCCESS, "confirm": 64}), ["`success.confirm` is 64", "remove `success.confirm`"]),
    (
        "negative reward threshold",
        rl_values(success={**SUCCESS, "threshold": -1}),
        ["in `success.threshold`", "`reward_threshold` is -1.0"],
    ),
    ("test length 0", rl_values(success={**SUCCESS, "length": 0}), ["in `success.length`", "`eval_lengths` is [0]"]),
    (
        "budget field in base",
        rl_values(base={"max_episodes": 50}),
        ["`base.max_episodes` is set by `budget.steps`"],
    ),
    (
        "test lengths in base",
        rl_values(base={"eval_lengths": [50, 100]}),
        ["`base.eval_lengths` is set", "one length, `success.length`", "remove `eval_lengths` from `base`"],
    ),
    ("neuralgpu field in base", rl_values(base={"width": 24}), ["in `base`", "unknown key `width`"]),
    (
        "unknown env on an axis",
        rl_values(axes={"science": {"env": ["Copy", "Kopy"]}, "nuisance": {"seed": [0]}}),
        ["`axes.science.env[1]`", "`env` is 'Kopy'"],
    ),
]


@pytest.mark.parametrize(("values", "fragments"), [m[1:] for m in MISUSE], ids=[m[0] for m in MISUSE])
def test_rl_misuse_fails_with_one_paragraph_naming_the_fix(values, fragments, tmp_path, capsys, isolated_tracking):
    path = tmp_path / "bad_rl.yaml"
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}") and err.count("\n") == 1, err
    for fragment in fragments:
        assert fragment in err, f"{fragment!r} not in: {err}"
    assert err.rstrip().endswith("Nothing was launched or recorded.")
    assert not (isolated_tracking / "env-default.db").exists()


# --- end to end ------------------------------------------------------------------------------------------
def child_runs(client: MlflowClient, sweep: str) -> list:
    experiment = client.get_experiment_by_name(sweep)
    return list(client.search_runs([experiment.experiment_id], "tags.`seedpool.role` = 'trial'"))


@pytest.fixture(scope="module")
def rl_pool(tmp_path_factory, mlflow_template, ray_cluster):
    """Copy (solved after ~400 episodes by the defaults) and Reverse (never, here) for one seed, 500 episodes
    each: about a second of training per trial. Returns (directory, sweep path, exit code, output)."""
    directory = tmp_path_factory.mktemp("rl_pool")
    shutil.copyfile(mlflow_template, directory / "mlflow.db")
    values = rl_values(
        name="rl_tiny",
        base={"agent": "qlearning", "eval_examples": 2, "report_every": 50, "checkpoint_every": 100},
        axes={"science": {"env": ["Copy", "Reverse"]}, "nuisance": {"seed": [0]}},
        budget={"steps": 500},
        stopping=None,
        success={"metric": "reward_mean100", "threshold": 0, "length": 8},
        max_failures=0,
        tracking={"uri": f"sqlite:///{directory / 'mlflow.db'}", "storage": str(directory / "storage")},
    )
    path = directory / "rl_tiny.yaml"
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    output = directory / "output.txt"
    with output.open("w") as stream:
        code = run_sweep(load_sweep(str(path)), stream=stream, argv=["run", str(path)])
    return directory, path, code, output.read_text()


def test_rl_pool_records_one_finished_run_per_trial_with_rl_metrics(rl_pool):
    directory, path, code, output = rl_pool
    assert code == 0, output
    sweep = load_sweep(str(path))
    client = MlflowClient(tracking_uri=f"sqlite:///{directory / 'mlflow.db'}")
    runs = {r.data.tags["env"]: r for r in child_runs(client, "rl_tiny")}
    assert set(runs) == {"Copy", "Reverse"} and len(child_runs(client, "rl_tiny")) == 2
    by_key = {t.key: t for t in sweep.trials}
    for run in runs.values():
        trial = by_key[run.data.tags["trial_key"]]
        assert run.info.status == "FINISHED" and run.data.tags["trainer"] == "rl"
        assert RL_TAGS <= set(run.data.tags) and run.data.tags["q_target"] == "watkins"
        assert {k: run.data.params[k] for k in ("max_episodes", "reward_threshold", "eval_lengths", "seed")} == {
            "max_episodes": "500",
            "reward_threshold": "0.0",
            "eval_lengths": "[8]",
            "seed": "0",
        }
        assert set(trial.run_config) <= set(run.data.params), "every resolved RLConfig value is a param"
        metrics = run.data.metrics
        assert {"success", "steps", "wall_time_s", "episode/reward_mean100", "eval/seq_error_at_8"} <= set(metrics)
        curve = client.get_metric_history(run.info.run_id, "episode/reward_mean100")
        assert sorted(m.step for m in curve)[:3] == [50, 100, 150], "curves indexed by episode"
        result = json.loads(Path(client.download_artifacts(run.info.run_id, "result.json")).read_text())
        assert result["episodes_to_solve"] == result["steps_to_success"]
        assert [row["length"] for row in result["eval_table"]] == [8]
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"config", "eval", "checkpoint", "result.json"} <= artifacts

    copy, reverse = runs["Copy"].data, runs["Reverse"].data
    assert copy.metrics["success"] == 1.0 and copy.tags["stop_reason"] == "success"
    assert copy.metrics["steps_to_success"] == copy.metrics["steps"] - 100, "solved: the next 100 episodes were it"
    assert reverse.metrics["success"] == 0.0 and reverse.tags["stop_reason"] == "max_episodes"
    assert reverse.metrics["steps"] == 500 and "steps_to_success" not in reverse.metrics

    summary = output.split("whole pool:")[1]
    assert "median episodes" in summary
    copy_line, reverse_line = (line for line in summary.splitlines() if line.startswith(("Copy ", "Reverse ")))
    assert "1/1" in copy_line and "0/1" in reverse_line and "max_episodes 1" in reverse_line
    (parent,) = client.search_runs(
        [client.get_experiment_by_name("rl_tiny").experiment_id], "tags.`seedpool.role` = 'parent'"
    )
    assert parent.info.status == "FINISHED" and parent.data.params["success.metric"] == "reward_mean100"
    assert parent.data.metrics["pool/successes"] == 1 and parent.data.metrics["pool/finished"] == 2


def test_rl_pool_ends_with_the_report_hint_and_a_rerun_runs_nothing(rl_pool, capsys):
    directory, path, code, output = rl_pool
    assert code == 0, output
    uri = f"sqlite:///{directory / 'mlflow.db'}"
    hint = f"make report EXPERIMENT=rl_tiny MLFLOW_TRACKING_URI={uri}"
    assert output.rstrip().splitlines()[-1].startswith("[rl_tiny] analysis report: ") and hint in output
    assert main(["run", str(path)]) == 0
    out = capsys.readouterr().out
    assert "2 finished earlier, 0 to run" in out and hint in out


# --- the report hint -------------------------------------------------------------------------------------
def test_report_hint_names_the_store_only_when_make_would_not_find_it(monkeypatch, tmp_path):
    sweep = load_sweep("rl_qlearning")
    default = f"sqlite:///{REPO / 'runs' / 'mlflow.db'}"
    monkeypatch.chdir(REPO)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert report_hint(sweep, default).split(": ", 1)[1].startswith("make report EXPERIMENT=rl_qlearning  (")
    other = f"sqlite:///{tmp_path / 'my store.db'}"
    assert f"EXPERIMENT=rl_qlearning 'MLFLOW_TRACKING_URI={other}'" in report_hint(sweep, other)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", other)
    assert "MLFLOW_TRACKING_URI" not in report_hint(sweep, other), "make reads the same variable from the env"
    assert f"MLFLOW_TRACKING_URI={default}" in report_hint(sweep, default)
    monkeypatch.chdir(tmp_path)
    assert f"make -C {REPO} report" in report_hint(sweep, other)
    assert report_hint(sweep, other).count("\n") == 0


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_report_hint_is_a_command_the_makefile_runs_as_promised(monkeypatch, tmp_path):
    """`make -n` prints the recipe: the hint's URI must reach analysis.report, whatever the environment says."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////elsewhere/other.db")
    uri = f"sqlite:///{tmp_path / 'pool.db'}"
    hint = report_hint(load_sweep("rl_qlearning"), uri)
    command = shlex.split(hint.split(": ", 1)[1].split("  (")[0])
    done = subprocess.run([command[0], "-n", *command[1:]], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    recipe = [line for line in done.stdout.splitlines() if "analysis.report" in line]
    assert len(recipe) == 1 and f"analysis.report rl_qlearning --tracking-uri {uri} " in recipe[0], done.stdout
