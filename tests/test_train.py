"""The trainer end to end with tiny budgets: determinism, exact resume, divergence, budgets, learning."""

import math

import pytest
import torch
from tiny import collect, collect_keeping_checkpoint, neuralgpu_config, without_timing

from neuralgpu.config import TrainConfig
from neuralgpu.curriculum import LengthCurriculum, NoCurriculum
from neuralgpu.evaluate import error_rates, evaluate_length
from neuralgpu.model import ModelConfig, NeuralGPU
from neuralgpu.tasks import VOCAB_SIZE
from neuralgpu.train import Trainer, gradient_noise_std, train
from neuralgpu.variants import variant
from seedcore.record import NEURALGPU, documented

tiny_config = neuralgpu_config


def run_and_collect(cfg, **kwargs):
    return collect(train, cfg, **kwargs)


def test_same_seed_gives_bit_identical_metrics():
    cfg = tiny_config(grad_noise=True)
    first, reports_a = run_and_collect(cfg)
    second, reports_b = run_and_collect(cfg)
    assert without_timing(reports_a) == without_timing(reports_b)
    assert first.eval_table == second.eval_table
    _, reports_c = run_and_collect(cfg.replace(seed=1))
    assert without_timing(reports_c) != without_timing(reports_a)


def test_resume_continues_bit_identically(tmp_path):
    cfg = tiny_config(max_steps=60)
    full, reports, saved = collect_keeping_checkpoint(train, cfg, 20, tmp_path)
    resumed, resumed_reports = run_and_collect(cfg, resume_from=str(saved))
    assert without_timing(resumed_reports) == without_timing([r for r in reports if r["step"] > 20])
    assert resumed.steps == full.steps == 60
    assert resumed.eval_table == full.eval_table


def test_resume_refuses_a_checkpoint_of_another_run(tmp_path):
    train(tiny_config(max_steps=20), checkpoint_dir=str(tmp_path))
    with pytest.raises(ValueError, match="different `width`"):
        train(tiny_config(width=5), resume_from=str(tmp_path))


def test_a_run_stopped_by_its_success_can_go_on_training(tmp_path):
    cfg = tiny_config(max_steps=40, curriculum="bins", bins=[5, 7])  # at its longest length from the start
    first = Trainer(cfg, report=None, checkpoint_dir=str(tmp_path))
    scripted_evaluations(first, [0.0] * 20)  # every test passes: success at the first one, step 10
    assert first.run().stop_reason == "success" and first.progress.step == 10

    more = Trainer(cfg.replace(stop_on_success=False), report=None, checkpoint_dir=None)
    more.load(str(tmp_path))
    scripted_evaluations(more, [0.0] * 20)
    result = more.run()
    assert result.steps == 40 and result.steps_to_success == 10
    with pytest.raises(ValueError, match="different `lr`"):
        Trainer(cfg.replace(stop_on_success=False, lr=0.1), report=None, checkpoint_dir=None).load(str(tmp_path))


def test_checkpoint_loads_with_weights_only(tmp_path):
    train(tiny_config(max_steps=20), checkpoint_dir=str(tmp_path))
    state = torch.load(tmp_path / "state.pt", weights_only=True)
    assert state["progress"]["step"] == 20


def test_nan_loss_ends_as_diverged_not_a_crash():
    trainer = Trainer(tiny_config(), report=None, checkpoint_dir=None)
    with torch.no_grad():
        trainer.model.readout.weight.fill_(float("nan"))
    result = trainer.run()
    assert result.stop_reason == "diverged"
    assert result.diverged_step == 1
    assert not result.success
    assert result.eval_table == []


def test_patience_stops_a_run_whose_curriculum_never_advances():
    result = train(tiny_config(advance_threshold=0.0, patience_steps=20, max_steps=100))
    assert result.stop_reason == "no_progress"
    assert result.steps == 20


def test_minute_budget():
    result = train(tiny_config(max_steps=0, max_minutes=0.002))
    assert result.stop_reason == "max_minutes"
    assert result.wall_time_s >= 0.12


def test_report_metrics_are_namespaced():
    result, reports = run_and_collect(tiny_config())
    assert [r["step"] for r in reports] == [10, 20, 30, 40]
    expected = {
        "step",
        "train/loss",
        "train/seq_error",
        "train/digit_error",
        "train/lr",
        "train/pull",
        "train/examples_per_s",
        "curriculum/length",
        "time/wall_s",
        "success",
        "eval/seq_error@train",
    }
    assert expected <= set(reports[0])
    # Every name reported is in the record's vocabulary (tests/test_record_vocabulary.py checks both directions).
    assert [k for r in reports for k in r if not documented(k, NEURALGPU)] == []
    assert "eval/seq_error@9" in reports[-1] and "eval/digit_error@9" in reports[-1]
    assert result.final_metrics["eval/seq_error@9"] == result.eval_table[0]["seq_error"]


def scripted_evaluations(trainer, seq_errors):
    """Replace the trainer's tests by a script of sequence errors; returns the (length, examples) asked for."""
    asked = []

    def evaluate(length, examples):
        asked.append((length, examples))
        error = seq_errors.pop(0)
        return {"length": length, "seq_error": error, "digit_error": error / 10, "examples": examples}

    trainer.evaluate = evaluate
    return asked


def test_a_pass_counts_only_once_fresh_examples_confirm_it():
    trainer = Trainer(tiny_config(success_confirm=32), report=None, checkpoint_dir=None)
    # (test, confirmation) at steps 10 and 30, the test alone at 20: 0.0 passes, 0.05 and 0.2 fail.
    asked = scripted_evaluations(trainer, [0.0, 0.05, 0.2, 0.0, 0.0])
    for step in (10, 20, 30):
        trainer.progress.step = step
        trainer.success_test()
        if step == 10:
            assert trainer.progress.steps_to_success is None
            assert trainer.progress.pending_eval["confirm/seq_error@9"] == 0.05
    assert trainer.progress.steps_to_success == 30
    assert asked == [(9, 8), (9, 32), (9, 8), (9, 8), (9, 32)]
    assert trainer.progress.pending_eval["confirm/seq_error@9"] == 0.0


def test_hold_counts_each_test_once_and_confirms_only_the_deciding_pass():
    trainer = Trainer(tiny_config(success_hold=2, success_confirm=16), report=None, checkpoint_dir=None)
    asked = scripted_evaluations(trainer, [0.0, 0.0, 0.0])
    trainer.progress.step = 10
    trainer.success_test()
    assert asked == [(9, 8)]  # one pass of two: nothing to confirm yet
    trainer.progress.step = 20
    trainer.success_test()
    assert trainer.progress.steps_to_success == 20
    assert asked == [(9, 8), (9, 8), (9, 16)]

    # A run that ends at a step whose success test passed once: the final evaluation reuses that test and does
    # not count it a second time towards the hold.
    trainer = Trainer(tiny_config(success_hold=2), report=None, checkpoint_dir=None)
    asked = scripted_evaluations(trainer, [0.0])
    trainer.progress.step = 40
    trainer.success_test()
    trainer.final_eval(diverged=False)
    assert asked == [(9, 8)]
    assert trainer.progress.steps_to_success is None
    assert trainer.eval_table == [{"length": 9, "seq_error": 0.0, "digit_error": 0.0, "examples": 8, "step": 40}]


def test_length_curriculum_counts_only_current_lengths_and_advances():
    curriculum = LengthCurriculum(min_length=3, start_length=6, max_length=8, threshold=0.15)
    curriculum.record(7, 1.0)  # longer than the current length: not counted
    curriculum.record(5, 0.1)
    curriculum.record(6, 0.1)
    assert curriculum.check() and curriculum.length == 7
    curriculum.record(7, 0.5)
    assert not curriculum.check() and curriculum.length == 7
    assert not curriculum.check()  # nothing counted since the last check
    restored = LengthCurriculum(min_length=3, start_length=6, max_length=8, threshold=0.15)
    restored.load_state_dict(curriculum.state_dict())
    assert restored.state_dict() == curriculum.state_dict()


def test_length_curriculum_samples_within_bounds_and_mixes_longer_lengths():
    import numpy as np

    curriculum = LengthCurriculum(min_length=3, start_length=6, max_length=41, threshold=0.15)
    lengths = [curriculum.sample_length(np.random.default_rng(i)) for i in range(2000)]
    assert min(lengths) == 3 and max(lengths) <= 41
    longer = sum(length > 6 for length in lengths) / len(lengths)
    assert 0.15 < longer < 0.3  # the p = 0.25 mix with U[3, 41] exceeds 6 about 0.25 * 35/39 of the time
    flat = NoCurriculum(min_length=3, start_length=6, max_length=9, threshold=0.15)
    assert flat.length == 9 and flat.at_max


def test_dropout_and_gradient_noise_schedules():
    cfg = tiny_config()
    assert variant("k15").dropout_rate(cfg, 8) == pytest.approx(0.15)
    assert variant("k15").dropout_rate(cfg, 40) == pytest.approx(0.03)
    assert gradient_noise_std(cfg, 1, 0.02) == 0.0
    assert gradient_noise_std(cfg, 100, 0.52) == pytest.approx(math.sqrt(100**-0.55 * 0.5))


def test_error_rates_ignore_padding_targets():
    targets = torch.tensor([[2, 1, 0], [2, 2, 0]])
    predictions = torch.tensor([[2, 1, 5], [2, 1, 0]])  # row 0: wrong only at padding; row 1: one wrong digit
    seq_error, digit_error = error_rates(predictions, targets)
    assert seq_error == 0.5 and digit_error == 0.25


def test_evaluation_at_length_2001_in_chunks():
    import numpy as np

    model = NeuralGPU(ModelConfig(vocab_size=VOCAB_SIZE, width=3, height=2, relax_copies=1))
    row = evaluate_length(model, "badd", 2001, examples=2, rng=np.random.default_rng(0), chunk=1)
    assert row["length"] == 2001 and row["examples"] == 2
    assert 0.0 <= row["digit_error"] <= 1.0 and row["seq_error"] == 1.0  # an untrained model


def test_a_tiny_model_learns_copy_and_generalises():
    # About half a minute on one CPU thread: a width-16 model learns copy up to length 8 and then copies
    # length-15 inputs with < 5% sequence error (the success rule here).
    cfg = TrainConfig.from_dict(
        dict(
            task="copy",
            width=16,
            max_length=8,
            seed=0,
            max_steps=1500,
            eval_lengths=[15],
            success_length=15,
            success_threshold=0.05,
            probe_carries=[1, 2, 4],
            success_gate=0.2,
            report_every=100,
            eval_every=50,
            advance_every=50,
        ),
        source="test",
    )
    result = train(cfg)
    assert result.success, result.to_dict()
    assert result.stop_reason == "success"
    assert result.steps_to_success <= 1500
    assert result.final_metrics["curriculum/length"] == 8
    assert result.eval_table[0]["seq_error"] < 0.2
