"""Testing a saved model far beyond its training length: `neuralgpu.assess`."""

import json

import numpy as np

from neuralgpu.assess import assess, load_saved, main
from neuralgpu.config import TrainConfig
from neuralgpu.evaluate import predict
from neuralgpu.tasks import random_batch
from neuralgpu.train import Trainer


def trained(tmp_path, model="f17"):
    values = dict(model=model, task="badd", width=6, max_length=7, bins=[5, 7], max_steps=30, checkpoint_every=30)
    values |= dict(report_every=10, eval_every=10, advance_every=10, eval_lengths=[9], success_length=9)
    cfg = TrainConfig.from_dict(values | dict(eval_batch=8, probes=False), source="test")
    trainer = Trainer(cfg, report=None, checkpoint_dir=str(tmp_path))
    trainer.run()
    return trainer


def test_a_saved_model_answers_exactly_like_the_trained_one(tmp_path):
    for model in ("f17", "k15"):
        trainer = trained(tmp_path / model, model)
        saved = load_saved(tmp_path / model)
        assert saved.step == trainer.progress.step == 30
        assert saved.cfg == trainer.cfg
        inputs, targets = random_batch("badd", 15, 8, np.random.default_rng(1))
        np.testing.assert_array_equal(predict(saved.model, inputs, targets), predict(trainer.model, inputs, targets))


def test_assess_rows_count_exact_answers_and_use_their_own_examples(tmp_path):
    trained(tmp_path)
    saved = load_saved(tmp_path / "state.pt")
    first = assess(saved, [9, 21], examples=6, seed=3, probes=True)
    again = assess(saved, [9, 21], examples=6, seed=3)
    assert [row["length"] for row in first["eval"]] == [9, 21]
    for row in first["eval"]:
        assert row["examples"] == 6
        assert row["exact_answers"] == round((1 - row["seq_error"]) * 6)
        assert row["exact_rate"] == row["exact_answers"] / 6
    assert first["eval"] == again["eval"]  # the seed alone fixes the test examples
    assert {row["probe"] for row in first["probes"]} >= {"carry_chain", "random", "structured"}


def test_cli_prints_one_json_line_per_checkpoint_and_rejects_a_missing_one(tmp_path, capsys):
    trained(tmp_path)
    assert main([str(tmp_path), str(tmp_path / "state.pt"), "--lengths", "11", "--examples", "4"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and json.loads(lines[0])["eval"] == json.loads(lines[1])["eval"]
    assert main([str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no state.pt" in err
