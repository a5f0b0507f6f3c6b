"""The trainer plumbing both trainers share (seedcore): checkpoints, RNG state, resume checks, CLI."""

import dataclasses
import json
import random
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from neuralgpu.config import TrainConfig
from rl_tasks.config import RLConfig
from seedcore.cli import build_parser, run_cli
from seedcore.config import ConfigError, describe_fields
from seedcore.runtime import (
    check_resumable,
    global_rng_state,
    load_state,
    numpy_state_to_torch,
    save_atomic,
    set_global_rng_state,
)


# --- checkpoints -----------------------------------------------------------------------------------------
def test_save_atomic_round_trips_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "deeper" / "state.pt"
    save_atomic({"format": 1, "weights": torch.arange(3)}, path)
    assert sorted(p.name for p in path.parent.iterdir()) == ["state.pt"]
    state = load_state(path, "cpu", expected_format=1)
    assert torch.equal(state["weights"], torch.arange(3))


def test_a_failed_save_keeps_the_previous_checkpoint_whole(tmp_path, monkeypatch):
    path = tmp_path / "state.pt"
    save_atomic({"format": 1, "step": 10}, path)

    def killed_writer(obj, target):
        with open(target, "wb") as f:
            f.write(b"torn")
        raise KeyboardInterrupt  # the writer dies mid-file

    monkeypatch.setattr(torch, "save", killed_writer)
    with pytest.raises(KeyboardInterrupt):
        save_atomic({"format": 1, "step": 20}, path)
    monkeypatch.undo()
    assert load_state(path, "cpu", expected_format=1)["step"] == 10


def test_load_state_refuses_another_format(tmp_path):
    path = save_atomic({"format": 0}, tmp_path / "state.pt")
    with pytest.raises(ConfigError, match="checkpoint format 0 is not 1"):
        load_state(path, "cpu", expected_format=1)


# --- RNG state -------------------------------------------------------------------------------------------
def draws() -> tuple:
    return random.random(), float(np.random.random()), float(torch.rand(()))


def test_global_rng_state_survives_a_weights_only_checkpoint(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    draws()
    path = save_atomic({"format": 1, "rng": global_rng_state(cuda=True)}, tmp_path / "state.pt")
    expected = draws()
    draws()  # move every generator on
    set_global_rng_state(load_state(path, "cpu", expected_format=1)["rng"])
    assert draws() == expected


def test_numpy_state_is_stored_as_a_tensor_and_state_without_cuda_restores():
    state = global_rng_state(cuda=False)
    assert "cuda" not in state
    assert isinstance(numpy_state_to_torch(np.random.get_state(legacy=False))["state"]["key"], torch.Tensor)
    expected = draws()
    set_global_rng_state(state)
    assert draws() == expected


# --- resume check ----------------------------------------------------------------------------------------
def test_check_resumable_allows_only_the_listed_fields(tmp_path):
    saved = {"width": 24, "max_steps": 100}
    check_resumable(saved, {"width": 24, "max_steps": 500}, {"max_steps"}, tmp_path)
    with pytest.raises(ConfigError, match=r"different `width` \(24 vs 32\); resume with the checkpoint's config"):
        check_resumable(saved, {"width": 32, "max_steps": 100}, {"max_steps"}, tmp_path)


# --- command line ----------------------------------------------------------------------------------------
@dataclass
class FakeResult:
    steps: int

    def to_dict(self) -> dict:
        return {"steps": self.steps}


def cli(argv, config_cls=RLConfig):
    """run_cli with a train function that records its config instead of training."""
    seen = []

    def train(cfg, report, checkpoint_dir, resume_from):
        seen.append(cfg)
        return FakeResult(steps=3)

    def load_checkpoint(directory):
        raise AssertionError("no --resume in these tests")

    code = run_cli(argv, build_parser(config_cls, "prog", "test"), config_cls, train, str, load_checkpoint)
    return code, seen


@pytest.mark.parametrize("config_cls", [TrainConfig, RLConfig])
@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--widht", "24"], "unrecognized arguments: --widht"),
        (["--seed", "zero"], "invalid int value: 'zero'"),
        (["--eval-lengths"], "expected at least one argument"),
        (["--device", "tpu"], "`device` is 'tpu'"),
    ],
)
def test_bad_flags_are_one_line_and_exit_2(capsys, config_cls, argv, expected):
    code, seen = cli(argv, config_cls)
    err = capsys.readouterr().err
    assert code == 2 and not seen
    assert err.startswith("error: ") and err.count("\n") == 1 and expected in err


def test_flags_are_typed_by_the_config_fields(capsys):
    code, (cfg,) = cli(["--eval-lengths", "3", "5", "--no-stop-on-success", "--max_episodes", "7", "--lr", "1"])
    assert code == 0
    assert cfg.eval_lengths == (3, 5) and cfg.stop_on_success is False and cfg.max_episodes == 7
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float)
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 3 and summary["config"]["max_episodes"] == 7


def test_optional_fields_take_their_inner_type():
    code, (cfg,) = cli(["--model", "f17", "--relax-copies", "1", "--max-steps", "5"], TrainConfig)
    assert code == 0 and cfg.relax_copies == 1 and cfg.lr == pytest.approx(0.01 * 48 / cfg.width)


def test_every_rl_field_is_documented():
    docs = describe_fields(RLConfig)
    assert list(docs) == [f.name for f in dataclasses.fields(RLConfig)]
    assert all(docs.values()), [name for name, doc in docs.items() if not doc]
