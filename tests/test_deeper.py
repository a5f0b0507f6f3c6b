"""The deeper Neural GPU: F17 model, task curriculum, hard examples, memory modes and failure probes."""

import shutil

import numpy as np
import pytest
import torch

from bench.step_speed import UnfusedImprovedNeuralGPU
from neuralgpu.config import ConfigError, TrainConfig
from neuralgpu.curriculum import LengthCurriculum, TaskCurriculum
from neuralgpu.model import DCGRU, ImprovedNeuralGPU, ModelConfig, NeuralGPU, hard_sigmoid, hard_tanh, shift_maps
from neuralgpu.probes import run_probes
from neuralgpu.tasks import VOCAB_SIZE, decode_operands, operands_summing_to, tough_batch
from neuralgpu.train import adamax_beta2, train


def test_hard_nonlinearities_by_hand():
    x = torch.tensor([-3.0, -1.0, 0.0, 0.5, 1.0, 3.0])
    assert hard_sigmoid(x).tolist() == [0.0, 0.0, 0.5, 0.75, 1.0, 1.0]
    assert hard_tanh(x).tolist() == [-1.0, -1.0, 0.0, 0.5, 1.0, 1.0]


def test_shift_maps_moves_a_third_left_and_a_third_right():
    s = torch.tensor([[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]])  # (B=1, m=3, n=3)
    shifted = shift_maps(s)
    assert shifted[0, 0].tolist() == [1.0, 2.0, 3.0]  # stays
    assert shifted[0, 1].tolist() == [0.0, 4.0, 5.0]  # out[i] = in[i - 1]
    assert shifted[0, 2].tolist() == [8.0, 9.0, 0.0]  # out[i] = in[i + 1]


def test_dcgru_with_zero_weights_is_the_biased_gate_times_the_shift():
    cell = DCGRU(ModelConfig(vocab_size=VOCAB_SIZE, width=3))
    for p in cell.parameters():
        torch.nn.init.zeros_(p)
    s = torch.tensor([[[0.5, -0.5], [0.25, 1.0], [2.0, -1.0]]])
    new, cost = cell(s, dropout=0.0)
    # r = hs(0.5) = 0.75, u = hs(0.7) = 0.85, c = htanh(0) = 0, so s' = 0.85 * shift(s).
    torch.testing.assert_close(new, 0.85 * shift_maps(s))
    assert cost == 0  # every pre-activation (0.5, 0.7, 0) is inside the 0.9 limit


def test_f17_saturation_cost_by_hand():
    """Zero convolution weights make every pre-activation a constant: the input layer is the embedding, the gates
    are their bias + F17's 0.5 / 0.7, the candidate is its bias. Each pays relu(|x| - 0.9) per map and position."""
    m, batch, n = 6, 2, 5
    model = ImprovedNeuralGPU(ModelConfig(vocab_size=VOCAB_SIZE, width=m))
    with torch.no_grad():
        model.embed.weight.zero_()
        model.embed.weight[1] = 5.0  # pays 5 - 0.9 = 4.1 on every map
        model.embed.weight[2] = -0.5  # inside the limit: pays nothing
        for conv, bias in ((model.cell.gates, 1.0), (model.cell.candidate, -2.0)):
            conv.weight.zero_()
            conv.bias.fill_(bias)
    inputs = torch.tensor([[1, 2, 1, 2, 2], [2, 1, 2, 2, 1]])  # four 1s
    model(inputs)
    # Input layer, weighted by n: 4.1 x m maps x 4 positions x n. Each of the n steps, at every one of the
    # batch x n positions: r = 1 + 0.5 pays 0.6, u = 1 + 0.7 pays 0.8, the candidate's -2 pays 1.1 (m maps each).
    total = 4.1 * m * 4 * n + (0.6 + 0.8 + 1.1) * m * batch * n * n
    assert model.saturation_cost.item() == pytest.approx(total / (n * n * batch), rel=1e-5)  # 24.84


def test_f17_saturation_cost_is_the_sum_over_its_hooked_pre_activations():
    """The fused DCGRU never calls its conv modules, so the op-by-op formulation (same weights) is hooked."""
    torch.manual_seed(0)
    model = ImprovedNeuralGPU(ModelConfig(vocab_size=VOCAB_SIZE, width=6))
    reference = UnfusedImprovedNeuralGPU(model.cfg)
    inputs = torch.randint(1, 12, (2, 7))
    pre_activations = {"embed": [], "gates": [], "candidate": []}
    for name in pre_activations:
        module = reference.embed if name == "embed" else getattr(reference.cell, name)
        module.register_forward_hook(lambda module, args, out, name=name: pre_activations[name].append(out.detach()))
    with torch.no_grad():
        model.embed.weight.mul_(4.0)  # push some inputs past the limit, so the input layer pays too
    reference.load_state_dict(model.state_dict())
    targets = torch.randint(1, 3, (2, 7))
    reference(inputs, targets)
    logits, loss = model(inputs, targets)
    assert logits.shape == (2, 7, VOCAB_SIZE) and torch.isfinite(loss)

    def cost(x):
        return (x.abs() - 0.9).clamp_min(0).sum()

    batch, n = inputs.shape
    (embedded,) = pre_activations["embed"]
    gate_bias = torch.tensor([0.5] * 6 + [0.7] * 6).view(1, 12, 1)
    steps = sum(cost(g + gate_bias) for g in pre_activations["gates"]) + sum(map(cost, pre_activations["candidate"]))
    assert len(pre_activations["gates"]) == len(pre_activations["candidate"]) == n
    expected = (cost(embedded) * n + steps) / (n * n * batch)
    assert cost(embedded) > 0 and steps > 0
    torch.testing.assert_close(model.saturation_cost, expected)


def test_model_choice_brings_its_own_recipe():
    k15 = TrainConfig.from_dict({"width": 96})
    f17 = TrainConfig.from_dict({"model": "f17", "width": 96})
    assert (k15.optimizer, k15.lr, k15.curriculum, k15.relax_copies) == ("adam", 1e-3, "length", 6)
    assert (f17.optimizer, f17.curriculum, f17.relax_copies, f17.dropout) == ("adamax_f17", "bins", 1, 0.5)  # badd
    assert f17.lr == pytest.approx(0.01 * 48 / 96)
    assert TrainConfig.from_dict({"model": "f17", "lr": 0.02}).lr == 0.02  # an explicit value wins
    with pytest.raises(ConfigError, match="F17 shares one weight set"):
        TrainConfig.from_dict({"model": "f17", "relax_copies": 6})
    assert adamax_beta2(0) == pytest.approx(0.99) and adamax_beta2(10**6) == pytest.approx(0.9995)


def scripted_curriculum() -> TaskCurriculum:
    return TaskCurriculum(
        ["bmul", "qmul", "mul"],
        lambda: LengthCurriculum(min_length=3, start_length=6, max_length=7, threshold=0.15),
        first_share=0.8,
    )


def test_task_curriculum_trains_the_first_unsolved_task_80_percent_of_the_time():
    schedule = scripted_curriculum()
    draws = [schedule.sample_task(np.random.default_rng(i)) for i in range(3000)]
    share = {task: draws.count(task) / len(draws) for task in schedule.tasks}
    # 80% first unsolved + 20% spread uniformly over the 3 unsolved tasks.
    assert share["bmul"] == pytest.approx(0.8 + 0.2 / 3, abs=0.03)
    assert share["qmul"] == pytest.approx(0.2 / 3, abs=0.02)


def test_task_curriculum_rule_on_a_scripted_sequence_of_errors():
    schedule = scripted_curriculum()
    bmul, qmul, mul = (schedule.lengths[t] for t in schedule.tasks)

    bmul.record(6, 0.05)
    assert schedule.check() and bmul.length == 7 and not schedule.solved["bmul"]  # advanced, not yet at max
    bmul.record(7, 0.05)
    assert schedule.check() and schedule.solved["bmul"]  # passed at max length: solved
    assert schedule.sample_task(np.random.default_rng(0)) in ("qmul", "mul")  # solved tasks are not drawn

    bmul.record(7, 0.5)  # the solved task got worse: unsolved again, one length shorter
    assert not schedule.check()
    assert not schedule.solved["bmul"] and bmul.length == 6

    for curriculum in (bmul, qmul, mul):
        curriculum.length = 7
        curriculum.record(7, 0.0)
    assert schedule.check() and all(schedule.solved.values())
    assert {schedule.sample_task(np.random.default_rng(i)) for i in range(50)} == {"mul"}  # all solved: last only

    restored = scripted_curriculum()
    restored.load_state_dict(schedule.state_dict())
    assert restored.state_dict() == schedule.state_dict()


def test_tough_examples_are_correct_and_hard():
    rng = np.random.default_rng(0)
    inputs, targets = tough_batch("badd", 41, 400, rng)
    sums_to_power = 0
    for row_in, row_out in zip(inputs, targets, strict=True):
        a, b = decode_operands("badd", row_in)
        answer = int("".join(str(d - 1) for d in row_out[::-1]), 2)
        assert answer == a + b
        total = a + b
        sums_to_power += total > 1 and ((total & (total - 1)) == 0 or (total + 1) & total == 0)
    # 20% of pairs sum to 2^j or 2^j - 1 by construction; uniform pairs almost never do.
    assert 0.15 < sums_to_power / 400 < 0.35
    inputs, targets = tough_batch("mul", 21, 50, rng)
    for row_in, row_out in zip(inputs, targets, strict=True):
        a, b = decode_operands("mul", row_in)
        assert int("".join(str(d - 1) for d in row_out[::-1])) == a * b


def test_operands_summing_to_stay_within_their_digits():
    rng = np.random.default_rng(1)
    for total in (1, 9, 10, 99, 10**30, 2 * 10**30 - 2):
        a, b = operands_summing_to(total, 10**30 + 1 if total > 10**30 else 10**31, rng)
        assert a + b == total and a >= 0 and b >= 0


@pytest.mark.parametrize("model_cls", [NeuralGPU, ImprovedNeuralGPU])
def test_memory_modes_give_the_same_gradients(model_cls):
    inputs = torch.randint(1, 12, (3, 9))
    targets = torch.randint(1, 3, (3, 9))
    grads = {}
    for mode in ("plain", "checkpoint", "offload"):
        torch.manual_seed(0)
        model = model_cls(ModelConfig(vocab_size=VOCAB_SIZE, width=6, relax_copies=2, memory=mode)).train()
        torch.manual_seed(1)  # the same dropout masks in every mode
        _, loss = model(inputs, targets, dropout=0.2)
        loss.backward()
        grads[mode] = [p.grad.clone() for p in model.parameters()]
    for mode in ("checkpoint", "offload"):
        for plain, other in zip(grads["plain"], grads[mode], strict=True):
            torch.testing.assert_close(other, plain, rtol=1e-5, atol=1e-6)


class Oracle(torch.nn.Module):
    """Answers every example exactly (it peeks at the targets), or always answers digit 0 when `wrong`."""

    def __init__(self, wrong: bool = False):
        super().__init__()
        self.wrong = wrong

    def forward(self, inputs, targets=None, dropout=0.0, steps=None):
        answer = torch.ones_like(targets) if self.wrong else targets
        return torch.nn.functional.one_hot(answer, VOCAB_SIZE).float(), None


def test_probes_judge_a_perfect_and_a_wrong_model():
    kwargs = dict(task="add", carries=(1, 3, 9), examples=4, length=21, chunk=3)
    perfect = run_probes(Oracle(), rng=np.random.default_rng(0), **kwargs)
    kinds = [row["probe"] for row in perfect]
    assert kinds == ["carry_chain"] * 3 + ["equal_stretch"] * 2 + ["random", "structured"]
    assert [row["carry"] for row in perfect[:3]] == [1, 3, 9]
    assert all(row["seq_error"] == 0 for row in perfect if "seq_error" in row)
    assert all(row["correct"] for row in perfect if row["probe"] == "equal_stretch")
    assert perfect[3]["example"].startswith("0000000002 + 0000000001 = 000000000000000000003")
    wrong = run_probes(Oracle(wrong=True), rng=np.random.default_rng(0), **kwargs)
    assert all(row["seq_error"] == 1 for row in wrong if "seq_error" in row)
    assert not any(row["correct"] for row in wrong if row["probe"] == "equal_stretch")
    assert run_probes(Oracle(), task="copy", carries=(1,), examples=2, length=9, rng=np.random.default_rng(0)) == []


def deeper_config(**overrides) -> TrainConfig:
    values = dict(
        width=6,
        max_length=9,
        max_steps=30,
        report_every=10,
        eval_every=10,
        advance_every=10,
        checkpoint_every=10,
        eval_lengths=[11],
        success_length=11,
        eval_batch=4,
        probe_carries=[1, 3],
        probe_examples=2,
    )
    return TrainConfig.from_dict({**values, **overrides}, source="test")


@pytest.mark.parametrize(
    "overrides",
    [
        {"model": "f17", "task": "bmul", "bins": [5, 9]},
        {"task": "mul", "task_curriculum": ["bmul", "qmul", "mul"], "hard_examples": 0.25, "memory": "checkpoint"},
    ],
)
def test_deeper_runs_train_resume_exactly_and_probe(tmp_path, overrides):
    cfg = deeper_config(**overrides)
    saved = tmp_path / "at_10"
    reports = []

    def keep(metrics, checkpoint):
        reports.append({k: v for k, v in metrics.items() if not k.startswith("time/") and "per_s" not in k})
        if checkpoint and metrics["step"] == 10:
            shutil.copytree(checkpoint, saved)

    full = train(cfg, report=keep, checkpoint_dir=str(tmp_path / "live"))
    assert full.steps == 30 and full.probe_table
    resumed_reports = []
    resumed = train(
        cfg,
        report=lambda m, c: resumed_reports.append(
            {k: v for k, v in m.items() if not k.startswith("time/") and "per_s" not in k}
        ),
        resume_from=str(saved),
    )
    assert resumed_reports == [r for r in reports if r["step"] > 10]
    assert resumed.probe_table == full.probe_table
