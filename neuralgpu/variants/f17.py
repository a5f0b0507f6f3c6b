"""F17: Freivalds & Liepins 2017, "Improving the Neural GPU Architecture for Algorithm Learning" (arXiv
1702.08727): one shared weight set, hard nonlinearities whose saturation cost joins the loss with an adapted
weight, AdaMax with lr 0.01 * 48 / width.

The recipe follows F17's public trainer (LUMII-Syslab/DNGPU; the audit is docs/neural-gpu-fidelity.md): its own
AdaMax without a global gradient clip, its LR decay rule, its initialisation, and its width and dropout per task."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from neuralgpu.variants import ModelVariant

if TYPE_CHECKING:
    import torch

F17_DROPOUT = {"badd": 0.5}
"""F17's dropout rate per task where it is not 0.1 (DNGPU_trainer.py: keep 0.5 for badd, 0.9 for bmul, qmul,
mulbcd and sort)."""


F17_WIDTH = {"badd": 48, "sort": 48, "bmul": 96, "qmul": 192, "mul": 192}
"""F17's width m per task (DNGPU_trainer.py: badd 48, sort 48, bmul 96, qmul 192, mulbcd 192, its decimal
multiplication); tasks F17 did not train get 48, the width its learning rate 0.01 * 48 / m is scaled from."""


def f17_dropout(cfg) -> float:
    return F17_DROPOUT.get(cfg.task, 0.1)


def f17_width(cfg) -> int:
    return F17_WIDTH.get(cfg.task, 48)


def glorot_bound(fan_in: int, fan_out: int) -> float:
    """Glorot & Bengio 2010: U(-a, a) with a = sqrt(6 / (fan_in + fan_out)), TF 1.0's default initializer."""
    return math.sqrt(6.0 / (fan_in + fan_out))


def f17_init_(model: torch.nn.Module) -> None:
    """F17's initialisation of an ImprovedNeuralGPU, in place: every weight glorot-uniform, every bias 0
    (DNGPU_model.py: tf.get_variable without an initializer is TF 1.0's glorot_uniform; biases constant 0).

    F17's r, c and g are three (k, m, m) convolutions, so each gets a = sqrt(6 / (2 k m)) = sqrt(3 / (k m)), the r
    and u halves of our fused gate convolution too. The input layer and the readout are 1x1 convolutions over our
    shared vocabulary (F17: 13 input symbols, 3-6 classes), so their fans are ours: with m = 96 the input bound is
    0.225 (F17 0.235) and the readout's 0.225 (F17 bmul 0.246).
    """
    import torch

    cell, m = model.cell, model.cfg.width
    kernel = cell.candidate.kernel_size[0]
    symbols = model.embed.num_embeddings
    with torch.no_grad():
        # Embedding (symbols, m) = the one-hot 1x1 convolution's kernel; its bias is folded in and starts at 0.
        model.embed.weight.uniform_(-glorot_bound(symbols, m), glorot_bound(symbols, m))
        for conv in (cell.gates, cell.candidate):
            bound = glorot_bound(kernel * m, kernel * m)
            conv.weight.uniform_(-bound, bound)
            conv.bias.zero_()
        readout_bound = glorot_bound(m, model.readout.out_channels)
        model.readout.weight.uniform_(-readout_bound, readout_bound)
        model.readout.bias.zero_()


class F17(ModelVariant):
    module = "neuralgpu.model:ImprovedNeuralGPU"
    recipe = {  # in order: the learning rate follows the width
        "width": f17_width,
        "relax_copies": 1,
        "dropout": f17_dropout,
        "curriculum": "bins",
        "optimizer": "adamax_f17",
        "lr": lambda cfg: 0.01 * 48 / cfg.width,
        "lr_decay": 0.7,
        "lr_decay_rule": "f17",
        "init": "f17",
        "clip_norm": 0.0,  # F17 clips each gradient element inside its AdaMax, never the global norm
    }

    def check(self, cfg, need) -> None:
        need(
            cfg.relax_copies == 1,
            "relax_copies",
            f"is {cfg.relax_copies} with model f17",
            "F17 shares one weight set: leave relax_copies unset or 1",
        )

    def initialise(self, model, cfg) -> None:
        if cfg.init == "f17":
            f17_init_(model)

    def initial_aux_weight(self, cfg) -> float:
        return cfg.saturation_weight_max  # F17 starts at its cap, 1e-3

    def auxiliary_loss(self, model, loss):
        return model.saturation_cost

    def adapt_aux_weight(self, cfg, weight: float, window_loss: float, window_aux: float, lr: float) -> float:
        # F17: re-set the weight so the weighted saturation cost is about lr x the loss, capped.
        return min(max(window_loss / window_aux * lr, 1e-20), cfg.saturation_weight_max)
