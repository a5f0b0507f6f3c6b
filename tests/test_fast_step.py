"""The fused training step (issue #17): the fused CGRU/DCGRU give the gradients of the op-by-op formulation,
dropout masks keep their distribution, runs stay deterministic on a CPU and the parameters keep their layout."""

import numpy as np
import pytest
import torch

from bench.common import fixed_length_config
from bench.step_speed import UnfusedImprovedNeuralGPU, UnfusedNeuralGPU
from neuralgpu.model import (
    ImprovedNeuralGPU,
    ModelConfig,
    NeuralGPU,
    clamp_backward_,
    drop_positions,
    dropout_scale,
)
from neuralgpu.tasks import VOCAB_SIZE, random_batch
from neuralgpu.train import Trainer


def fused_models_dropout(x: torch.Tensor, rate: float) -> torch.Tensor:
    """Dropout with the fused models' draws, in their order and memory layout (a (B, m, h, n) channels-last
    state; F17's (B, m, n) one as (B, m, 1, n))."""
    like = (x if x.dim() == 4 else x.unsqueeze(2)).contiguous(memory_format=torch.channels_last)
    return x * dropout_scale(like, rate).view(like.shape).reshape(x.shape)


class SameMaskNeuralGPU(UnfusedNeuralGPU):
    dropout = staticmethod(fused_models_dropout)


class SameMaskImprovedNeuralGPU(UnfusedImprovedNeuralGPU):
    dropout = staticmethod(fused_models_dropout)


def objective_and_grads(model, inputs, targets, dropout):
    torch.manual_seed(7)  # the same dropout masks for both formulations
    _, loss = model(inputs, targets, dropout=dropout)
    objective = loss + model.saturation_cost if isinstance(model, ImprovedNeuralGPU) else loss
    return objective.detach(), torch.autograd.grad(objective, list(model.parameters()))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("dropout", [0.0, 0.3])
@pytest.mark.parametrize("length", [7, 8])  # badd at an even length has padding: the mask is exercised
@pytest.mark.parametrize(
    "fused_class, reference_class, relax_copies",
    [(NeuralGPU, SameMaskNeuralGPU, 3), (ImprovedNeuralGPU, SameMaskImprovedNeuralGPU, 1)],
)
def test_fused_gradients_equal_the_op_by_op_formulation(
    fused_class, reference_class, relax_copies, length, dropout, dtype
):
    cfg = ModelConfig(vocab_size=VOCAB_SIZE, width=6, relax_copies=relax_copies)
    torch.manual_seed(0)
    fused = fused_class(cfg).to(dtype)
    with torch.no_grad():
        fused.embed.weight.mul_(3.0)  # F17: some inputs past the saturation limit, so that term is exercised
    reference = reference_class(cfg).to(dtype)
    reference.load_state_dict(fused.state_dict())
    inputs, targets = (torch.from_numpy(a) for a in random_batch("badd", length, 5, np.random.default_rng(0)))
    fused_objective, fused_grads = objective_and_grads(fused, inputs, targets, dropout)
    reference_objective, reference_grads = objective_and_grads(reference, inputs, targets, dropout)
    tolerance = {"rtol": 1e-9, "atol": 1e-12} if dtype == torch.float64 else {"rtol": 1e-4, "atol": 1e-6}
    torch.testing.assert_close(fused_objective, reference_objective, **tolerance)
    for (name, _), got, expected in zip(fused.named_parameters(), fused_grads, reference_grads, strict=True):
        assert expected.abs().sum() > 0 or name.startswith("embed"), name  # every weight set gets a gradient
        torch.testing.assert_close(got, expected, **tolerance, msg=lambda m, name=name: f"{name}: {m}")


def test_clamp_gradient_passes_at_the_bounds_like_autograds_clamp():
    x = torch.tensor([-0.5, 0.0, 0.25, 1.0, 1.5, -0.0], requires_grad=True)
    torch.clamp(x, 0.0, 1.0).backward(torch.full_like(x, 3.0))
    assert x.grad.tolist() == [0.0, 3.0, 3.0, 3.0, 0.0, 3.0]
    assert clamp_backward_(torch.full_like(x, 3.0), x.detach(), 0.0, 1.0).tolist() == x.grad.tolist()


def test_dropout_scale_is_an_independent_bernoulli_mask_in_the_input_layout():
    torch.manual_seed(0)
    like = torch.empty(50, 40, 5, 100).contiguous(memory_format=torch.channels_last)  # 10^6 elements
    scale = dropout_scale(like, 0.1)
    assert scale.is_contiguous(memory_format=torch.channels_last)
    assert scale.unique().tolist() == [0.0, pytest.approx(1 / 0.9)]
    dropped = (scale == 0).permute(0, 2, 3, 1).reshape(-1).double()  # memory order
    sigma = (0.1 * 0.9 / dropped.numel()) ** 0.5
    assert abs(dropped.mean() - 0.1) < 5 * sigma
    for part in dropped.chunk(10):  # no drift along memory (a short draw would leave the end undropped)
        assert abs(part.mean() - 0.1) < 5 * sigma * 10**0.5
    # Independent neighbours: P(both dropped) = 0.1^2 (geometric gaps have no memory).
    both = (dropped[1:] * dropped[:-1]).mean()
    assert abs(both - 0.01) < 5 * (0.01 * 0.99 / dropped.numel()) ** 0.5


def test_drop_positions_cover_the_whole_range_at_high_rates():
    torch.manual_seed(1)
    positions = drop_positions(1000, 0.9)
    assert positions.unique().numel() == positions.numel() and 0 <= positions.min() and positions.max() < 1000
    assert 850 < positions.numel() < 950


@pytest.mark.parametrize("model, width", [("k15", 6), ("f17", 6)])
def test_cpu_training_is_deterministic(model, width):
    cfg = fixed_length_config(model, width, 9, 8, 1, eval_every=10**9, advance_every=10**9, report_every=10**9)
    runs = []
    for _ in range(2):
        trainer = Trainer(cfg, report=None, checkpoint_dir=None)
        runs.append([trainer.train_step() for _ in range(4)] + [p.detach().clone() for p in trainer.model.parameters()])
    assert runs[0][:4] == runs[1][:4]  # bit-identical losses
    assert all(torch.equal(a, b) for a, b in zip(runs[0][4:], runs[1][4:], strict=True))


def test_parameters_keep_the_checkpoint_layout():
    """Checkpoints written before the fused step load: the same keys and shapes (copies first for K15)."""
    k15 = NeuralGPU(ModelConfig(vocab_size=VOCAB_SIZE, width=6, relax_copies=3)).state_dict()
    assert {k: tuple(v.shape) for k, v in k15.items() if k.startswith("cgrus.0")} == {
        "cgrus.0.gates.weight": (3, 12, 6, 3, 3),
        "cgrus.0.gates.bias": (3, 12),
        "cgrus.0.candidate.weight": (3, 6, 6, 3, 3),
        "cgrus.0.candidate.bias": (3, 6),
    }
    f17 = ImprovedNeuralGPU(ModelConfig(vocab_size=VOCAB_SIZE, width=6)).state_dict()
    assert {k: tuple(v.shape) for k, v in f17.items() if k.startswith("cell")} == {
        "cell.gates.weight": (12, 6, 3),
        "cell.gates.bias": (12,),
        "cell.candidate.weight": (6, 6, 3),
        "cell.candidate.bias": (6,),
    }
    UnfusedNeuralGPU(ModelConfig(vocab_size=VOCAB_SIZE, width=6, relax_copies=3)).load_state_dict(k15)


@pytest.mark.parametrize("model_class", [NeuralGPU, ImprovedNeuralGPU])
def test_autocast_runs_the_fused_step_in_the_autocast_dtype(model_class):
    """The GPU's bf16 path, run under CPU autocast: finite gradients of the fp32 parameters, a loss near fp32's."""
    torch.manual_seed(0)
    model = model_class(ModelConfig(vocab_size=VOCAB_SIZE, width=6, relax_copies=3 if model_class is NeuralGPU else 1))
    inputs, targets = (torch.from_numpy(a) for a in random_batch("badd", 8, 4, np.random.default_rng(0)))
    _, fp32_loss = model(inputs, targets)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, loss = model(inputs, targets, dropout=0.1)
    loss.backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in model.parameters() if p.requires_grad)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    assert loss.item() == pytest.approx(fp32_loss.item(), rel=0.1)
