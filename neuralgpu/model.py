"""Neural GPU models: K15/P16 (`NeuralGPU`) and the improved F17 variant (`ImprovedNeuralGPU`).

K15: Kaiser & Sutskever 2015, arXiv 1511.08228, as extended by Price et al. 2016, arXiv 1611.00736.
F17: Freivalds & Liepins 2017, "Improving the Neural GPU Architecture for Algorithm Learning", arXiv 1702.08727.

Only modules and their config live here: no I/O, no training loop; `neuralgpu.variants` names each model with its
training recipe. `forward` returns logits, plus the loss when
targets are given. K15's mental image is (B, m, h, n) = (batch, maps, height, length), so the 3x3 convolutions
run over (height, length) exactly as K15's 2-D convolution over h x n; F17's state is (B, m, n).

Memory modes (both models): "plain"; "checkpoint" recomputes each step's activations during backward
(torch.utils.checkpoint, RNG state preserved so dropout masks repeat); "offload" keeps saved activations in host
memory (torch.autograd.graph.save_on_cpu, the analogue of P16's tf.while_loop swap_memory). All three give the
same gradients.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int
    """Number of symbols (0 = padding)."""
    width: int = 24
    """m: maps of the mental image."""
    height: int = 4
    """h: rows of the mental image; the input is written into row 0."""
    kernel: int = 3
    """Convolution kernel size."""
    cgrus_per_step: int = 2
    """CGRUs applied at each of the n steps."""
    relax_copies: int = 6
    """Copies of every CGRU weight set; step t uses copy t mod relax_copies (K15's parameter-sharing relaxation)."""
    init_scale: float = 1.8
    """Factor of the uniform unit-scaling initialiser (K15)."""
    sigmoid_cutoff: float = 1.2
    """c of the hard sigmoid: clamp(c*sigmoid(x) - (c-1)/2, 0, 1) can saturate to exactly 0 and 1 (K15)."""
    saturation_limit: float = 0.9
    """F17: pre-activations of hard nonlinearities beyond +-limit pay the saturation cost."""
    memory: str = "plain"
    """plain, checkpoint or offload (see the module docstring)."""


def sigmoid_cutoff(x: torch.Tensor, cutoff: float) -> torch.Tensor:
    """K15's saturating sigmoid: 1.2*sigmoid(x) - 0.1, clamped to [0, 1]."""
    return torch.clamp(cutoff * torch.sigmoid(x) - (cutoff - 1.0) / 2.0, 0.0, 1.0)


def hard_sigmoid(x: torch.Tensor) -> torch.Tensor:
    """F17: clip(0.5 x + 0.5, 0, 1)."""
    return torch.clamp(0.5 * x + 0.5, 0.0, 1.0)


def hard_tanh(x: torch.Tensor) -> torch.Tensor:
    """F17: clip(x, -1, 1)."""
    return torch.clamp(x, -1.0, 1.0)


def saturation(x: torch.Tensor, limit: float) -> torch.Tensor:
    """F17's saturation cost of one pre-activation tensor: sum relu(|x| - limit)."""
    return F.relu(x.abs() - limit).sum()


def shift_maps(s: torch.Tensor) -> torch.Tensor:
    """F17's diagonal move of a (B, m, n) state: the last third of the maps takes the value of the right
    neighbour, the third before it the left neighbour's, the rest stay (zero enters at the borders)."""
    m = s.shape[1]
    third = m // 3
    stay, from_left, from_right = s.split([m - 2 * third, third, third], dim=1)
    from_left = F.pad(from_left[:, :, :-1], (1, 0))  # out[i] = in[i - 1]
    from_right = F.pad(from_right[:, :, 1:], (0, 1))  # out[i] = in[i + 1]
    return torch.cat([stay, from_left, from_right], dim=1)


def memory_context(mode: str) -> contextlib.AbstractContextManager:
    """Where autograd keeps saved activations: in host memory for "offload", else where they were made."""
    if mode == "offload":
        return torch.autograd.graph.save_on_cpu(pin_memory=torch.cuda.is_available())
    return contextlib.nullcontext()


def run_step(step: Callable[..., torch.Tensor], mode: str, *args) -> torch.Tensor:
    """One step, recomputed in backward under "checkpoint" (only when a graph is being built)."""
    if mode == "checkpoint" and torch.is_grad_enabled():
        return checkpoint(step, *args, use_reentrant=False)
    return step(*args)


def padding_mask(
    inputs: torch.Tensor, targets: torch.Tensor | None, state_dims: int, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """The positions a model computes on: `active` (B, n) is True where the input or the target is not padding;
    `mask` is `active` in `dtype`, shaped (B, 1, ..., 1, n) to multiply a state of `state_dims` dimensions."""
    active = inputs != 0 if targets is None else (inputs != 0) | (targets != 0)  # (B, n)
    batch, n = active.shape
    return active, active.view(batch, *[1] * (state_dims - 2), n).to(dtype)


def unit_scaling_(tensor: torch.Tensor, fan_in: int, factor: float) -> torch.Tensor:
    """TF's uniform_unit_scaling_initializer: U(-a, a) with a = factor * sqrt(3 / fan_in)."""
    bound = factor * math.sqrt(3.0 / fan_in)
    with torch.no_grad():
        return tensor.uniform_(-bound, bound)


class RelaxedConv2d(nn.Module):
    """A same-padded convolution with `copies` independent weight sets; `forward(x, copy)` picks one.

    weight: (copies, out, in, k, k), bias: (copies, out). With copies == 1 this is a plain shared conv.
    """

    def __init__(self, in_maps: int, out_maps: int, kernel: int, copies: int, init_scale: float):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(copies, out_maps, in_maps, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(copies, out_maps))
        unit_scaling_(self.weight, fan_in=in_maps * kernel * kernel, factor=init_scale)
        self.padding = kernel // 2

    def forward(self, x: torch.Tensor, copy: int) -> torch.Tensor:
        return F.conv2d(x, self.weight[copy], self.bias[copy], padding=self.padding)


class CGRU(nn.Module):
    """Convolutional GRU: u = sig_c(U*s + 1), r = sig_c(R*s + 1), c = tanh(C*(r.s)), s' = u.s + (1-u).c."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        m, k, r = cfg.width, cfg.kernel, cfg.relax_copies
        self.gates = RelaxedConv2d(m, 2 * m, k, r, cfg.init_scale)  # u and r in one convolution
        self.candidate = RelaxedConv2d(m, m, k, r, cfg.init_scale)
        self.cutoff = cfg.sigmoid_cutoff

    def forward(self, s: torch.Tensor, copy: int) -> torch.Tensor:
        # Gate biases start at 0 and the gates get a constant +1 (K15), so the GRU starts close to "keep".
        u, r = sigmoid_cutoff(self.gates(s, copy) + 1.0, self.cutoff).chunk(2, dim=1)  # (B, m, h, n) each
        c = torch.tanh(self.candidate(r * s, copy))
        return u * s + (1.0 - u) * c


class NeuralGPU(nn.Module):
    """K15/P16 Neural GPU: embed into row 0 of an (m, h, n) image, run n steps of CGRUs, read out row 0."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        m = cfg.width
        self.embed = nn.Embedding(cfg.vocab_size, m, padding_idx=0)  # padding embeds to exactly zero
        self.input_proj = nn.Conv1d(m, m, 1)  # K15's 1x1 convolution after the embedding's tanh
        self.cgrus = nn.ModuleList(CGRU(cfg) for _ in range(cfg.cgrus_per_step))
        self.readout = nn.Conv1d(m, cfg.vocab_size, 1)
        for module in (self.input_proj, self.readout):
            unit_scaling_(module.weight, fan_in=m, factor=cfg.init_scale)
            nn.init.zeros_(module.bias)

    def forward(
        self,
        inputs: torch.Tensor,
        targets: torch.Tensor | None = None,
        dropout: float = 0.0,
        steps: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """inputs, targets: (B, n) int64 symbols. Returns logits (B, n, vocab) and the mean cross-entropy over
        active positions (input or target not padding), or None without targets.

        dropout: rate on the state after each step (training only). steps: defaults to n (K15: n steps).
        """
        batch, n = inputs.shape
        active, mask = padding_mask(inputs, targets, state_dims=4, dtype=self.embed.weight.dtype)  # mask (B, 1, 1, n)

        def step(state: torch.Tensor, copy: int) -> torch.Tensor:
            for cgru in self.cgrus:
                # Padding in both input and target stays zero after every CGRU, so a padded column acts exactly
                # like the convolutions' zero border and never leaks into its neighbours.
                state = cgru(state, copy) * mask
            if self.training and dropout > 0:
                state = F.dropout(state, p=dropout)
            return state

        with memory_context(self.cfg.memory):
            x = torch.tanh(self.embed(inputs)).transpose(1, 2)  # (B, m, n)
            x = self.input_proj(x)
            rest = x.new_zeros(batch, self.cfg.width, self.cfg.height - 1, n)
            state = torch.cat([x.unsqueeze(2), rest], dim=2) * mask  # (B, m, h, n)
            for t in range(n if steps is None else steps):
                state = run_step(step, self.cfg.memory, state, t % self.cfg.relax_copies)
            logits = self.readout(state[:, :, 0, :]).transpose(1, 2)  # (B, n, vocab)
        return logits, masked_cross_entropy(logits, targets, active)

    def relaxed_parameters(self) -> list[nn.Parameter]:
        """The CGRU weight sets that have one copy per relaxation slot (leading dim = relax_copies)."""
        return [p for cgru in self.cgrus for p in cgru.parameters()]

    def relaxation_penalty(self) -> torch.Tensor:
        """sum over weight sets of sum_i ||w_i - mean_i(w)||^2 (K15's pull term, before its weight)."""
        total = self.embed.weight.new_zeros(())
        for p in self.relaxed_parameters():
            total = total + (p - p.mean(dim=0, keepdim=True)).pow(2).sum()
        return total

    @torch.no_grad()
    def average_copies(self) -> None:
        """Set every copy of every CGRU weight set to the copies' mean (the end of K15's annealing)."""
        for p in self.relaxed_parameters():
            p.copy_(p.mean(dim=0, keepdim=True).expand_as(p))

    def conv_flops(self, length: int) -> int:
        """Multiply-add FLOPs (2 per MAC) of the CGRU convolutions for one example of this length."""
        m, h, k = self.cfg.width, self.cfg.height, self.cfg.kernel
        per_cgru = 2 * (3 * m) * m * k * k * h * length  # gates (2m outputs) + candidate (m outputs)
        return per_cgru * self.cfg.cgrus_per_step * length


def masked_cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor | None, active: torch.Tensor
) -> torch.Tensor | None:
    """Mean cross-entropy over active positions (B, n); padding positions that are active must predict 0."""
    if targets is None:
        return None
    per_position = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1), reduction="none")
    weights = active.reshape(-1).to(per_position.dtype)
    return (per_position * weights).sum() / weights.sum().clamp_min(1.0)


class DCGRU(nn.Module):
    """F17's diagonal convolutional GRU on a (B, m, n) state:
    r = hs(R*s + 0.5), c = htanh(C*(r.s)), u = hs(U*s + 0.7), s' = u.shift(s) + (1-u).dropout(c)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        m, k = cfg.width, cfg.kernel
        self.gates = nn.Conv1d(m, 2 * m, k, padding=k // 2)  # r and u in one convolution
        self.candidate = nn.Conv1d(m, m, k, padding=k // 2)
        self.register_buffer("gate_bias", torch.tensor([0.5] * m + [0.7] * m).view(1, 2 * m, 1), persistent=False)
        self.limit = cfg.saturation_limit

    def forward(self, s: torch.Tensor, dropout: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns the new state and this step's saturation cost (a scalar)."""
        gate_pre = self.gates(s) + self.gate_bias  # (B, 2m, n)
        r, u = hard_sigmoid(gate_pre).chunk(2, dim=1)
        candidate_pre = self.candidate(r * s)
        c = F.dropout(hard_tanh(candidate_pre), p=dropout, training=self.training and dropout > 0)
        cost = saturation(gate_pre, self.limit) + saturation(candidate_pre, self.limit)
        return u * shift_maps(s) + (1.0 - u) * c, cost


class ImprovedNeuralGPU(nn.Module):
    """F17: 1-D state, one shared DCGRU applied n times, hard nonlinearities with a saturation cost.

    After a forward pass with gradients, `saturation_cost` holds F17's cost for that batch: the sum of
    relu(|x| - limit) over all hard-nonlinearity pre-activations (the input layer's weighted by n), divided by
    n^2 * batch. The trainer adds it to the loss with its adapted weight.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.width)  # F17's one-hot input and 1x1 convolution
        self.cell = DCGRU(cfg)
        self.readout = nn.Conv1d(cfg.width, cfg.vocab_size, 1)
        self.saturation_cost = torch.zeros(())

    def forward(
        self,
        inputs: torch.Tensor,
        targets: torch.Tensor | None = None,
        dropout: float = 0.0,
        steps: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """inputs, targets: (B, n) int64 symbols -> logits (B, n, vocab) and the masked mean cross-entropy."""
        batch, n = inputs.shape
        active, mask = padding_mask(inputs, targets, state_dims=3, dtype=self.embed.weight.dtype)  # mask (B, 1, n)

        def step(state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            state, cost = self.cell(state, dropout)
            return state * mask, cost

        with memory_context(self.cfg.memory):
            x = self.embed(inputs).transpose(1, 2)  # (B, m, n)
            cost = saturation(x, self.cfg.saturation_limit) * n
            state = F.dropout(hard_tanh(x), p=dropout, training=self.training and dropout > 0) * mask
            for _ in range(n if steps is None else steps):
                state, step_cost = run_step(step, self.cfg.memory, state)
                cost = cost + step_cost
            logits = self.readout(state).transpose(1, 2)  # (B, n, vocab)
        self.saturation_cost = cost / (n * n * batch)
        return logits, masked_cross_entropy(logits, targets, active)

    def relaxation_penalty(self) -> torch.Tensor:
        return self.embed.weight.new_zeros(())  # one shared weight set: nothing to pull together

    def average_copies(self) -> None:
        pass  # one shared weight set: already "averaged"

    def conv_flops(self, length: int) -> int:
        """Multiply-add FLOPs (2 per MAC) of the DCGRU convolutions for one example of this length."""
        m, k = self.cfg.width, self.cfg.kernel
        return 2 * (3 * m) * m * k * length * length
