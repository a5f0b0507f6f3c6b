"""Config validation and the `python -m neuralgpu.train` command line."""

import json
import subprocess
import sys

import pytest
import torch

from neuralgpu.config import ConfigError, TrainConfig
from neuralgpu.train import main
from seedcore.config import describe_fields

TINY = [
    "--no-probes",
    "--width",
    "4",
    "--max-length",
    "6",
    "--max-steps",
    "10",
    "--report-every",
    "5",
    "--eval-lengths",
    "7",
    "--success-length",
    "7",
    "--eval-batch",
    "4",
    "--quiet",
]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--task", "divide"], "`task` is 'divide', not a known task; use one of"),
        (["--width", "-3"], "`width` is -3"),
        (["--curriculum", "spiral"], "`curriculum` is 'spiral', not a known curriculum"),
        (["--widht", "24"], "unrecognized arguments: --widht"),
        (["--width", "wide"], "invalid int value: 'wide'"),
        (["--max-steps", "0"], "set a step or minute budget"),
        (["--start-length", "2"], "with min_length >= 3"),
        (["--device", "tpu"], "`device` is 'tpu'"),
    ],
)
def test_bad_arguments_give_one_line_and_exit_2(capsys, argv, expected):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert expected in err
    assert err.count("\n") == 1 and err.startswith("error: ")


@pytest.mark.skipif(torch.cuda.is_available(), reason="asks for CUDA where there is none")
def test_asking_for_cuda_without_it_names_the_flag_that_fixes_it(capsys):
    assert main(["--device", "cuda", *TINY]) == 2
    err = capsys.readouterr().err
    assert "torch sees no CUDA device" in err and "`--device cpu`" in err and err.count("\n") == 1


def test_yaml_config_errors_name_the_file(tmp_path, capsys):
    bad_key = tmp_path / "bad_key.yaml"
    bad_key.write_text("task: badd\nwidht: 24\n")
    assert main(["--config", str(bad_key)]) == 2
    assert f"{bad_key}: unknown key `widht`" in capsys.readouterr().err

    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("task: [badd\n")
    assert main(["--config", str(bad_yaml)]) == 2
    assert "not valid YAML" in capsys.readouterr().err

    assert main(["--config", str(tmp_path / "missing.yaml")]) == 2
    assert "cannot read the config file" in capsys.readouterr().err


def test_flags_override_the_yaml_config(tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text("task: copy\nwidth: 5\nseed: 3\n")
    assert main(["--config", str(config), "--seed", "4", *TINY]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["config"]["task"] == "copy"
    assert summary["config"]["width"] == 4  # the flag wins over the file
    assert summary["config"]["seed"] == 4
    assert summary["steps"] == 10 and summary["stop_reason"] == "max_steps"


def test_resume_without_a_config_continues_with_the_saved_one(tmp_path, capsys):
    checkpoint = tmp_path / "run"
    assert main(["--task", "copy", "--seed", "3", "--checkpoint-dir", str(checkpoint), *TINY]) == 0
    first = json.loads(capsys.readouterr().out)
    # Only the budget is given: task, width and seed come from the checkpoint, not from the defaults.
    assert main(["--resume", str(checkpoint), "--max-steps", "15", "--quiet"]) == 0
    resumed = json.loads(capsys.readouterr().out)
    assert resumed["config"] == {**first["config"], "max_steps": 15}
    assert resumed["steps"] == 15

    assert main(["--resume", str(tmp_path / "nothing")]) == 2
    assert "no state.pt to resume from" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"width": True}, "`width` should be an integer"),
        ({"width": 24.5}, "`width` should be an integer"),
        ({"lr": "fast"}, "`lr` should be a number"),
        ({"grad_noise": 1}, "`grad_noise` should be true or false"),
        ({"eval_lengths": [201, "401"]}, "`eval_lengths` should be a list of integers"),
        ({"eval_lengths": []}, "`eval_lengths` is []"),
        ({"success_metric": "accuracy"}, "`success_metric` is 'accuracy'"),
        ({"dropout": 1.5}, "`dropout` is 1.5"),
    ],
)
def test_config_types_and_ranges(values, expected):
    with pytest.raises(ConfigError, match="^sweep.yaml:base: ") as info:
        TrainConfig.from_dict(values, source="sweep.yaml:base")
    assert expected in str(info.value)


def test_ints_are_accepted_for_floats_and_round_trip():
    cfg = TrainConfig.from_dict({"lr": 1, "eval_lengths": [21]})
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_every_field_is_documented():
    docs = describe_fields(TrainConfig)
    assert all(docs.values()), [name for name, doc in docs.items() if not doc]


def test_module_entry_point_prints_a_json_summary():
    done = subprocess.run(
        [sys.executable, "-m", "neuralgpu.train", "--task", "badd", "--seed", "0", *TINY],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["steps"] == 10 and summary["eval_table"][0]["length"] == 7
