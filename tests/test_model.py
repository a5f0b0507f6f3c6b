"""Neural GPU modules: the hard sigmoid, shapes, masking, relaxation copies and their averaging."""

import math

import pytest
import torch

from neuralgpu.model import ModelConfig, NeuralGPU, sigmoid_cutoff
from neuralgpu.tasks import VOCAB_SIZE, encode


def tiny(**overrides) -> NeuralGPU:
    torch.manual_seed(0)
    return NeuralGPU(ModelConfig(vocab_size=VOCAB_SIZE, width=6, **overrides)).eval()


def test_sigmoid_cutoff_saturates_exactly_and_is_centred():
    x = torch.tensor([-50.0, 0.0, 50.0, math.log(3.0)])
    y = sigmoid_cutoff(x, 1.2)
    assert y[0] == 0.0 and y[2] == 1.0  # can fully saturate, unlike a sigmoid
    assert y[1] == pytest.approx(0.5)
    assert y[3] == pytest.approx(1.2 * 0.75 - 0.1)


def test_logits_and_loss_shapes():
    model = tiny()
    inputs = torch.randint(1, 12, (3, 9))
    targets = torch.randint(1, 3, (3, 9))
    logits, loss = model(inputs, targets)
    assert logits.shape == (3, 9, VOCAB_SIZE)
    assert loss.shape == () and torch.isfinite(loss)
    assert model(inputs)[1] is None


def test_padding_embeds_to_zero():
    model = tiny()
    assert torch.count_nonzero(model.embed.weight[0]) == 0


def test_masked_padding_columns_do_not_change_the_answer():
    # An example followed by extra all-padding columns must give the same logits on its own positions when run
    # for the same number of steps: masked positions stay zero, exactly like the convolution's zero padding.
    # The input projection gets a non-zero bias, so an unmasked padding column would not be zero and would
    # leak into its neighbours through the 3x3 convolutions.
    model = tiny()
    with torch.no_grad():
        model.input_proj.bias.fill_(0.5)
    inputs, targets = (torch.from_numpy(a)[None] for a in encode("badd", [5, 6], length=7))
    pad = torch.zeros(1, 4, dtype=torch.long)
    short, _ = model(inputs, targets, steps=7)
    padded, _ = model(torch.cat([inputs, pad], 1), torch.cat([targets, pad], 1), steps=7)
    torch.testing.assert_close(padded[:, :7], short, rtol=0, atol=1e-6)


def test_step_t_uses_copy_t_mod_r():
    model = tiny(relax_copies=2)
    with torch.no_grad():
        for cgru in model.cgrus:
            cgru.candidate.weight[1].fill_(float("nan"))
    inputs = torch.randint(1, 12, (2, 5))
    assert torch.isfinite(model(inputs, steps=1)[0]).all()  # step 0 uses copy 0 only
    assert torch.isnan(model(inputs, steps=2)[0]).any()  # step 1 uses copy 1


def test_relaxation_penalty_by_hand_and_averaging():
    model = tiny(relax_copies=3)
    params = model.relaxed_parameters()
    expected = sum(((p - p.mean(0)) ** 2).sum() for p in params)
    torch.testing.assert_close(model.relaxation_penalty(), expected)
    assert model.relaxation_penalty() > 0
    means = [p.detach().mean(0).clone() for p in params]
    model.average_copies()
    for p, mean in zip(params, means, strict=True):
        for copy in range(3):
            torch.testing.assert_close(p[copy], mean)
    assert model.relaxation_penalty() == 0


def test_penalty_is_zero_without_relaxation_copies():
    assert tiny(relax_copies=1).relaxation_penalty() == 0


def test_loss_counts_only_active_positions():
    model = tiny()
    inputs = torch.tensor([[3, 11, 2, 0]])
    targets = torch.tensor([[2, 2, 1, 0]])
    logits, loss = model(inputs, targets)
    expected = torch.nn.functional.cross_entropy(logits[0, :3], targets[0, :3])
    torch.testing.assert_close(loss, expected)
