"""F17's recipe as its public trainer runs it (issue 19, docs/neural-gpu-fidelity.md): the LR decay rule and its
floor, the initialisation, the AdaMax update, the dropout per task; each against a hand-computed case."""

import io
import math

import pytest
import torch
from tiny import collect_keeping_checkpoint, neuralgpu_config, without_timing

from neuralgpu.config import ConfigError, TrainConfig
from neuralgpu.optim import AdamaxF17
from neuralgpu.train import Trainer, lr_after_check, model_config, train
from neuralgpu.variants import variant


def f17_config(**overrides) -> TrainConfig:
    values = dict(model="f17", task="bmul", curriculum="bins", bins=[5, 7], width=6, max_length=7)
    return neuralgpu_config(**{**values, **overrides})


# --- the LR decay rule ---------------------------------------------------------------------------------------
F17_LR = TrainConfig.from_dict({"model": "f17", "width": 48})  # lr 0.01, decay 0.7, rule f17


@pytest.mark.parametrize(
    ("previous", "window", "decays"),
    [
        ([1.0, 2.0], 3.0, True),  # the window two checks back (1.0) beats both later ones
        ([1.0, 2.0], 0.9, False),  # this window is the best: progress
        ([1.0, 2.0], 1.0, False),  # a tie with the window two back is not "no progress" (strict <)
        ([1.0], 2.0, False),  # two windows only: F17 needs three
        ([5.0, 1.0, 2.0], 3.0, True),  # L[-3:] = 1, 2, 3: decays (reading previous[-3] = 5 would not)
        ([1.0, 5.0, 2.0], 3.0, False),  # L[-3:] = 5, 2, 3: no decay (reading previous[-3] = 1 would)
        ([9.0, 2.0, 1.0], 3.0, False),  # worse than the max of the last three, K15 decays; F17 sees 2 > 1
    ],
)
def test_f17_decay_rule_fires_when_the_window_two_checks_back_beats_both_later(previous, window, decays):
    lr = lr_after_check(F17_LR, 0.004, previous, window)
    assert lr == (pytest.approx(0.004 * 0.7) if decays else 0.004)


def test_f17_decay_stops_at_its_floor_of_lr_over_60():
    lr = F17_LR.lr
    history = []
    for _ in range(13):
        history.append(lr)
        lr = lr_after_check(F17_LR, lr, [1.0, 2.0], 3.0)  # fires every time
    # 0.01 * 0.7^11 = 1.98e-4 is above 0.01 / 60 = 1.67e-4; the 12th decay would give 1.38e-4 and stops there.
    assert history[11] == pytest.approx(0.01 * 0.7**11)
    assert history[12] == pytest.approx(0.01 / 60) and lr == pytest.approx(0.01 / 60)


def test_k15_decay_rule_is_unchanged():
    k15 = TrainConfig.from_dict({})
    assert (k15.lr_decay_rule, k15.lr_decay) == ("k15", 0.98)
    assert lr_after_check(k15, 1e-3, [9.0, 2.0, 1.0], 9.5) == pytest.approx(0.98e-3)  # above the max of three
    assert lr_after_check(k15, 1e-3, [9.0, 2.0, 1.0], 9.0) == 1e-3  # equal to it: no
    assert lr_after_check(k15, 1e-3, [2.0, 1.0], 9.0) == 1e-3  # fewer than three: no
    many = 1e-3
    for _ in range(300):
        many = lr_after_check(k15, many, [0.0, 0.0, 0.0], 1.0)
    assert many == pytest.approx(1e-3 * 0.98**300)  # no floor


@pytest.mark.parametrize(("rule", "lr_factor"), [("f17", 0.7), ("k15", 1.0)])
def test_the_trainer_applies_the_configured_rule_at_a_check(rule, lr_factor):
    trainer = Trainer(f17_config(lr_decay_rule=rule), report=None, checkpoint_dir=None)
    progress = trainer.progress
    progress.check_losses, progress.check_loss_sum, progress.check_loss_steps = [1.0, 2.0], 3.0, 1
    trainer.curriculum_check()
    expected = trainer.cfg.lr * lr_factor
    assert progress.lr == pytest.approx(expected)
    assert all(group["lr"] == pytest.approx(expected) for group in trainer.optimizer.param_groups)
    assert progress.check_losses == [1.0, 2.0, 3.0]


# --- initialisation ------------------------------------------------------------------------------------------
def built(**overrides):
    cfg = TrainConfig.from_dict({"model": "f17", "width": 96, **overrides})
    torch.manual_seed(0)
    model = variant("f17").build(model_config(cfg))
    variant("f17").initialise(model, cfg)
    return model


def test_f17_init_bounds_per_layer_and_zero_biases():
    model = built()
    m = 96
    conv_bound = math.sqrt(6 / (3 * m + 3 * m))  # TF glorot over one (3, m, m) kernel: sqrt(1/m) = 0.1021
    assert conv_bound == pytest.approx(0.10206, abs=1e-5)
    r, u = model.cell.gates.weight.chunk(2, dim=0)  # F17's r and g are separate (3, m, m) convolutions
    for name, weight, bound in [
        ("r", r, conv_bound),
        ("u", u, conv_bound),
        ("candidate", model.cell.candidate.weight, conv_bound),
        ("input", model.embed.weight, math.sqrt(6 / (22 + m))),  # 1x1 conv over our 22 symbols: 0.2255
        ("readout", model.readout.weight, math.sqrt(6 / (m + 22))),
    ]:
        biggest = weight.abs().max().item()
        # Uniform on (-bound, bound): with >= 2000 draws the largest is within 1% of the bound (PyTorch's conv
        # default, bound / sqrt(3), or an N(0, 1) input fails one side).
        assert 0.99 * bound < biggest <= bound, name
    for bias in (model.cell.gates.bias, model.cell.candidate.bias, model.readout.bias):
        assert torch.count_nonzero(bias) == 0
    assert model.embed.weight.abs().max() < model.cfg.saturation_limit  # no input unit starts saturated


def test_init_torch_keeps_the_modules_own_draw():
    model = built(init="torch")
    assert torch.count_nonzero(model.cell.gates.bias) > 0  # PyTorch's random conv biases
    assert model.embed.weight.abs().max() > 1.0  # N(0, 1): units past hard_tanh's limit


def test_init_f17_is_for_model_f17_only():
    with pytest.raises(ConfigError, match="`init` is 'f17' with model k15.*leave init unset or torch"):
        TrainConfig.from_dict({"init": "f17"})
    with pytest.raises(ConfigError, match="`init` is 'glorot'; use one of torch, f17"):
        TrainConfig.from_dict({"model": "f17", "init": "glorot"})
    with pytest.raises(ConfigError, match="`lr_decay_rule` is 'p16'; use one of k15, f17"):
        TrainConfig.from_dict({"lr_decay_rule": "p16"})


# --- F17's AdaMax ------------------------------------------------------------------------------------------
def test_f17_adamax_three_steps_by_hand():
    """lr 0.1, beta1 0.9, beta2 0.99, eps 1e-8, clip 1.2 u + 1e-4, u the running max before the step."""
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    optimizer = AdamaxF17([w], lr=0.1, betas=(0.9, 0.99), eps=1e-8)
    lr, eps = 0.1, 1e-8
    expected = [1.0, -2.0]
    steps = [
        # gradient, then by hand: clipped gradient, m = 0.9 m + 0.1 g, u = max(0.99 u, |g|)
        # 1: u = 0, bound 1e-4: 0.5 -> 1e-4 (clipped), -1e-5 passes; each weight moves by ~lr * 0.1 (torch's
        # bias-corrected Adamax would move it by ~lr)
        ([0.5, -1e-5], [1e-5, -1e-6], [1e-4, 1e-5]),
        # 2: bounds 1.2 u + 1e-4 = 2.2e-4, 1.12e-4: 0.5 -> 2.2e-4 (clipped), 3e-5 passes
        ([0.5, 3e-5], [0.9e-5 + 2.2e-5, -0.9e-6 + 3e-6], [2.2e-4, 3e-5]),
        # 3: a spike; bounds 3.64e-4, 1.36e-4: 100 -> 3.64e-4 (clipped), -1e-6 passes and u decays to 2.97e-5
        ([100.0, -1e-6], [2.79e-5 + 3.64e-5, 1.89e-6 - 1e-7], [3.64e-4, 2.97e-5]),
    ]
    for gradient, m, u in steps:
        w.grad = torch.tensor(gradient, dtype=torch.float64)
        optimizer.step()
        expected = [w_i - lr * m_i / (u_i + eps) for w_i, m_i, u_i in zip(expected, m, u, strict=True)]
        state = optimizer.state[w]
        torch.testing.assert_close(state["exp_avg"], torch.tensor(m, dtype=torch.float64), rtol=1e-12, atol=0)
        torch.testing.assert_close(state["exp_inf"], torch.tensor(u, dtype=torch.float64), rtol=1e-12, atol=0)
        torch.testing.assert_close(w.detach(), torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=0)


def test_f17_adamax_state_round_trips_and_has_torch_adamax_keys():
    def stepped(optimizer_class):
        w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
        optimizer = optimizer_class([w], lr=0.1)
        w.grad = torch.tensor([0.5, -0.25])
        optimizer.step()
        return w, optimizer

    w, optimizer = stepped(AdamaxF17)
    _, torch_adamax = stepped(torch.optim.Adamax)
    assert optimizer.state_dict()["state"][0].keys() == torch_adamax.state_dict()["state"][0].keys()
    copy_w, copy = stepped(AdamaxF17)
    saved = io.BytesIO()
    torch.save(optimizer.state_dict(), saved)  # as a checkpoint does (a plain state_dict shares its tensors)
    saved.seek(0)
    copy.load_state_dict(torch.load(saved, weights_only=True))
    for weight, opt in ((w, optimizer), (copy_w, copy)):
        weight.grad = torch.tensor([0.1, 0.1])
        opt.step()
    assert torch.equal(w, copy_w)


def test_f17_run_resumes_bit_identically(tmp_path):
    cfg = f17_config(max_steps=40)
    assert (cfg.optimizer, cfg.init, cfg.lr_decay_rule, cfg.clip_norm) == ("adamax_f17", "f17", "f17", 0.0)
    full, reports, saved = collect_keeping_checkpoint(train, cfg, 20, tmp_path)
    resumed = []
    train(cfg, report=lambda metrics, checkpoint: resumed.append(dict(metrics)), resume_from=str(saved))
    assert without_timing(resumed) == without_timing([r for r in reports if r["step"] > 20])


# --- dropout per task, and explicit values -------------------------------------------------------------------
def test_f17_dropout_per_task_and_an_explicit_value_wins():
    def dropout(**values):
        return TrainConfig.from_dict({"model": "f17", **values}).dropout

    assert dropout(task="badd") == 0.5  # F17's trainer: keep 0.5 for binary addition
    assert dropout(task="bmul") == 0.1
    assert dropout(task="qmul") == 0.1
    assert dropout(task="badd", dropout=0.1) == 0.1
    assert TrainConfig.from_dict({"task": "badd"}).dropout == 0.15  # k15 unchanged
    explicit = TrainConfig.from_dict(
        {"model": "f17", "optimizer": "adamax", "init": "torch", "lr_decay_rule": "k15", "clip_norm": 1.0}
    )
    assert (explicit.optimizer, explicit.init, explicit.lr_decay_rule, explicit.clip_norm) == (
        "adamax",
        "torch",
        "k15",
        1.0,
    )
    k15 = TrainConfig.from_dict({})
    assert (k15.optimizer, k15.init, k15.lr_decay_rule, k15.clip_norm) == ("adam", "torch", "k15", 1.0)


def test_f17_width_per_task_sets_its_learning_rate_and_an_explicit_width_wins():
    def recipe(**values):
        cfg = TrainConfig.from_dict({"model": "f17", **values})
        return cfg.width, cfg.lr

    assert recipe(task="badd") == (48, pytest.approx(0.01))  # F17's trainer: m 48 for binary addition
    assert recipe(task="bmul") == (96, pytest.approx(0.005))
    assert recipe(task="mul") == (192, pytest.approx(0.0025))  # as F17's decimal multiplication (mulbcd)
    assert recipe(task="qadd")[0] == 48  # a task F17 did not train: its reference width
    assert recipe(task="bmul", width=24) == (24, pytest.approx(0.02))
    assert TrainConfig.from_dict({"task": "bmul"}).width == 24  # k15 unchanged
