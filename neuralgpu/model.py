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

Speed (issue #17): each CGRU/DCGRU step is one custom autograd function (`FusedCGRU`, `FusedDCGRU`) with a
hand-written backward, on channels-last states (F17's as (B, m, 1, n)), with dropout masks drawn by geometric gaps
on a CPU. `bench/step_speed.py` keeps the op-by-op formulation, and tests/test_fast_step.py checks that both give
the same gradients.
"""

from __future__ import annotations

import contextlib
import functools
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
    """F17's diagonal move of a (B, m, n) or (B, m, 1, n) state: the last third of the maps takes the value of the
    right neighbour, the third before it the left neighbour's, the rest stay (zero enters at the borders).
    The result keeps the state's memory layout."""
    return _shift(s, 1)


def unshift_maps(g: torch.Tensor) -> torch.Tensor:
    """The adjoint of `shift_maps`: the gradient of its input given the gradient of its output."""
    return _shift(g, -1)


def _shift(s: torch.Tensor, direction: int, maps_dim: int = 1) -> torch.Tensor:
    """The shift with the maps along `maps_dim` (2 for a packed model's (B, G, m, 1, n) view: each its own)."""
    m = s.shape[maps_dim]
    third = m // 3
    stay, left, right = slice(0, m - 2 * third), slice(m - 2 * third, m - third), slice(m - third, m)
    if direction < 0:
        left, right = right, left
    lead = (slice(None),) * maps_dim
    out = torch.empty_like(s)
    out[(*lead, stay)] = s[(*lead, stay)]
    out[(*lead, left, ..., slice(1, None))] = s[(*lead, left, ..., slice(None, -1))]  # out[i] = in[i - 1]
    out[(*lead, left, ..., 0)] = 0.0
    out[(*lead, right, ..., slice(None, -1))] = s[(*lead, right, ..., slice(1, None))]  # out[i] = in[i + 1]
    out[(*lead, right, ..., -1)] = 0.0
    return out


def shift_groups(s: torch.Tensor, groups: int, direction: int = 1) -> torch.Tensor:
    """`shift_maps` (direction 1) or `unshift_maps` (-1) of each group's maps of a (B, groups * m, ...) state,
    as a (B, groups, m, ...) tensor (as (B, m, ...) with one group)."""
    if groups == 1:
        return _shift(s, direction)
    return _shift(by_group(s, groups), direction, maps_dim=2)


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


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The dtype autocast would run convolutions in on this device, or None when autocast is off. The fused
    steps run their convolutions in the dtype of the weights they are given and keep the state in its own
    (fp32), as autocast does op by op."""
    if torch.is_autocast_enabled(device.type):
        return torch.get_autocast_dtype(device.type)
    return None


def dropout_scale(like: torch.Tensor, rate: float) -> torch.Tensor:
    """F.dropout's multiplier for a tensor shaped and laid out like `like`: 0 with probability `rate`, else
    1 / (1 - rate), independently per element.

    On a CPU the drops are placed by geometric gaps (the waiting times of a Bernoulli process, the same
    distribution) rather than one uniform draw per element: at K15's rate of 0.03 that draws ~30x fewer numbers
    than `bernoulli_`, whose pass over the whole state cost a few percent of a step. Elsewhere, `bernoulli_`."""
    keep = 1.0 - rate
    scale = torch.empty_like(like)
    if like.device.type != "cpu":
        return scale.bernoulli_(keep).div_(keep)
    scale.fill_(1.0 / keep)
    order = sorted(range(like.dim()), key=lambda d: -like.stride(d))  # the memory order, outermost first
    flat = scale.permute(order).view(-1)
    flat[drop_positions(flat.numel(), rate)] = 0.0
    return scale


def drop_positions(numel: int, rate: float) -> torch.Tensor:
    """Indices in [0, numel) each included independently with probability `rate` (int64, ascending)."""
    log_keep = math.log1p(-rate)
    expected = numel * rate
    chunks, last = [], -1.0
    while last < numel:
        # Gap to the next drop ~ Geometric(rate) on {1, 2, ...}: floor(log(V) / log(1 - rate)) + 1, V ~ U(0, 1].
        count = int(expected + 6 * math.sqrt(expected) + 16)
        gaps = torch.floor(torch.log1p(-torch.rand(count, dtype=torch.float64)) / log_keep) + 1.0
        positions = last + gaps.cumsum(0)
        chunks.append(positions)
        last = float(positions[-1])
        expected = (numel - last) * rate  # only if the first draw fell short
    positions = torch.cat(chunks)
    return positions[positions < numel].long()


def conv_backward(
    grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, padding: int | tuple[int, ...], groups: int = 1
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients (input, weight, bias) of a stride-1 convolution, given the gradient of its output."""
    dims = weight.dim() - 2
    padding = [padding] * dims if isinstance(padding, int) else list(padding)
    return torch.ops.aten.convolution_backward(
        grad, x, weight, [weight.shape[0]], [1] * dims, padding, [1] * dims, False, [0] * dims, groups, [True] * 3
    )


def by_group(t: torch.Tensor, groups: int) -> torch.Tensor:
    """A (B, groups * c, ...) tensor as a (B, groups, c, ...) view: the maps of each packed model apart
    (neuralgpu.packed runs several models as one grouped convolution). With one group, `t` itself: an unpacked
    model runs the same kernels as before packing existed (views of a fifth dimension cost a few percent)."""
    if groups == 1:
        return t
    return t.view(t.shape[0], groups, t.shape[1] // groups, *t.shape[2:])


def gate_halves(g: torch.Tensor, groups: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first and second half of each group's maps of a gate convolution's (B, groups * 2m, ...) output,
    each as a (B, groups, m, ...) view (as (B, m, ...) with one group)."""
    return by_group(g, groups).chunk(2, dim=1 if groups == 1 else 2)


def merge_groups(t: torch.Tensor, groups: int) -> torch.Tensor:
    """The inverse of `by_group`: (B, groups, c, ...) -> (B, groups * c, ...), a view where the layout allows
    (elementwise results of `by_group` views keep a layout that does)."""
    if groups == 1:
        return t
    return t.reshape(t.shape[0], t.shape[1] * t.shape[2], *t.shape[3:])


def clamp_backward_(grad: torch.Tensor, unclamped: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """clamp(x, low, high)'s gradient in place: `grad` where low <= x <= high, else 0. One float pass: the
    comparisons with bool results that autograd's clamp backward uses cost several times more on a CPU.
    hardtanh_backward excludes its bounds, so they are widened to the neighbouring floats."""
    low, high = float_neighbours(unclamped.dtype, low, high)
    return torch.ops.aten.hardtanh_backward.grad_input(grad, unclamped, low, high, grad_input=grad)


@functools.cache
def float_neighbours(dtype: torch.dtype, low: float, high: float) -> tuple[float, float]:
    """The floats of `dtype` just below `low` and just above `high`."""
    below = torch.nextafter(torch.tensor(low, dtype=dtype), torch.tensor(-math.inf, dtype=dtype))
    above = torch.nextafter(torch.tensor(high, dtype=dtype), torch.tensor(math.inf, dtype=dtype))
    return below.item(), above.item()


def same_layout(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """`t` in `like`'s memory layout (channels-last for a channels-last 4-D `like`, else contiguous)."""
    if like.dim() == 4 and like.is_contiguous(memory_format=torch.channels_last):
        return t.contiguous(memory_format=torch.channels_last)
    return t.contiguous()


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

    def copies(self, dtype: torch.dtype | None = None) -> list[tuple[torch.Tensor, ...]]:
        """Each relaxation copy's (gate weight, gate bias + 1, candidate weight, candidate bias), for `forward`.

        Taken once per forward pass: unbinding the copies lets autograd sum each copy's gradient over its steps
        (indexing the full weight at every step would pad each step's gradient with zeros to all copies: at
        width 128 that cost more than the elementwise work). Weights are channels-last, like the state."""
        cast = (lambda t: t) if dtype is None else (lambda t: t.to(dtype))
        layout = {"memory_format": torch.channels_last}
        return [
            (cast(gw).contiguous(**layout), cast(gb + 1.0), cast(cw).contiguous(**layout), cast(cb))
            for gw, gb, cw, cb in zip(
                self.gates.weight.unbind(0),
                self.gates.bias.unbind(0),
                self.candidate.weight.unbind(0),
                self.candidate.bias.unbind(0),
                strict=True,
            )
        ]

    def forward(
        self, s: torch.Tensor, weights: tuple[torch.Tensor, ...], scale: torch.Tensor | None = None
    ) -> torch.Tensor:
        """One CGRU on s (B, m, h, n) with one copy's `weights` (from `copies`); the new state is multiplied by
        `scale` (padding mask and dropout) when given. Gate biases start at 0 and the gates get a constant +1
        (K15, folded into the bias by `copies`), so the GRU starts close to "keep"."""
        return FusedCGRU.apply(s, *weights, scale, self.cutoff, self.gates.padding)


class FusedCGRU(torch.autograd.Function):
    """The CGRU of `CGRU.forward` with a hand-written backward: one pass per elementwise result in forward,
    a few passes for the GRU update's and the gates' derivatives in backward.

    Same maths as sigmoid_cutoff + chunk + tanh + u*s + (1-u)*c + mask op by op (bench.step_speed's
    UnfusedNeuralGPU; tests/test_fast_step.py checks the gradients agree), including clamp's gradient at its
    bounds. The cutoff factor of the gates' derivative is applied to the gate convolution's gradients."""

    @staticmethod
    def forward(ctx, s, gate_w, gate_b, cand_w, cand_b, scale, cutoff: float, padding: int, groups: int = 1):
        with torch.autocast(s.device.type, enabled=False):
            s_conv = s.to(gate_w.dtype)  # the convolutions' dtype (autocast's), the state stays in its own
            gate_pre = F.conv2d(s_conv, gate_w, gate_b, padding=padding, groups=groups)
            sig = torch.sigmoid(gate_pre.to(s.dtype))  # (B, G 2m, h, n): each group's u then r
            unclamped = torch.add(sig.new_full((), -(cutoff - 1.0) / 2.0), sig, alpha=cutoff)
            g = unclamped.clamp(0.0, 1.0)
            u, r = gate_halves(g, groups)  # (B, G, m, h, n) each
            s_groups = by_group(s, groups)
            rs = merge_groups(r * s_groups, groups).to(cand_w.dtype)
            c = torch.tanh(F.conv2d(rs, cand_w, cand_b, padding=padding, groups=groups).to(s.dtype))
            c_groups = by_group(c, groups)
            diff = s_groups - c_groups
            out = merge_groups(torch.addcmul(c_groups, u, diff), groups)  # u s + (1 - u) c
            if scale is not None:
                out.mul_(scale)
        ctx.save_for_backward(s, s_conv, gate_w, cand_w, sig, unclamped, g, rs, c, diff, scale)
        ctx.padding, ctx.cutoff, ctx.groups = padding, cutoff, groups
        return out

    @staticmethod
    def backward(ctx, grad):
        s, s_conv, gate_w, cand_w, sig, unclamped, g, rs, c, diff, scale = ctx.saved_tensors
        groups = ctx.groups
        grad = same_layout(grad, s)
        if scale is not None:
            grad = grad * scale
        grad_groups = by_group(grad, groups)
        u, r = gate_halves(g, groups)
        d_gates = torch.empty_like(g)  # (B, G 2m, h, n): d u, d r side by side, as the gate convolution made them
        d_u, d_r = gate_halves(d_gates, groups)
        torch.mul(grad_groups, diff, out=d_u)
        d_c = merge_groups(torch.addcmul(grad_groups, grad_groups, u, value=-1.0), groups)  # (1 - u) grad
        d_cand = torch.ops.aten.tanh_backward(d_c, c)
        d_rs, d_cand_w, d_cand_b = conv_backward(d_cand.to(cand_w.dtype), rs, cand_w, ctx.padding, groups)
        d_rs = by_group(d_rs.to(s.dtype), groups)
        torch.mul(d_rs, by_group(s, groups), out=d_r)
        d_s = merge_groups(torch.addcmul(grad_groups * u, d_rs, r), groups)
        # d g / d pre-activation = cutoff sig (1 - sig) where the clamp passes; cutoff goes on the conv's gradients
        d_gates = torch.ops.aten.sigmoid_backward(clamp_backward_(d_gates, unclamped, 0.0, 1.0), sig)
        d_s_gates, d_gate_w, d_gate_b = conv_backward(d_gates.to(gate_w.dtype), s_conv, gate_w, ctx.padding, groups)
        d_s.add_(d_s_gates.to(s.dtype), alpha=ctx.cutoff)
        d_gate_w.mul_(ctx.cutoff)
        d_gate_b.mul_(ctx.cutoff)
        return d_s, d_gate_w, d_gate_b, d_cand_w, d_cand_b, None, None, None, None


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
        if inputs.device.type == "cpu" and bool(active.all()):
            mask = None  # nothing to zero: skip a pass per CGRU (a host sync, so only where it costs none)

        def step(state: torch.Tensor, copy: int) -> torch.Tensor:
            for i, cgru in enumerate(self.cgrus):
                # Padding in both input and target stays zero after every CGRU, so a padded column acts exactly
                # like the convolutions' zero border and never leaks into its neighbours. Dropout acts on the
                # state after the step's last CGRU, in the same multiply as the mask.
                scale = mask
                if i == len(self.cgrus) - 1 and self.training and dropout > 0:
                    scale = dropout_scale(state, dropout) if mask is None else dropout_scale(state, dropout) * mask
                state = cgru(state, weights[i][copy], scale)
            return state

        with memory_context(self.cfg.memory):
            dtype = autocast_dtype(inputs.device)
            weights = [cgru.copies(dtype) for cgru in self.cgrus]
            x = torch.tanh(self.embed(inputs)).transpose(1, 2)  # (B, m, n)
            x = self.input_proj(x)
            rest = x.new_zeros(batch, self.cfg.width, self.cfg.height - 1, n)
            state = torch.cat([x.unsqueeze(2), rest], dim=2)  # (B, m, h, n)
            if mask is not None:
                state = state * mask
            # Channels-last: oneDNN's 3x3 convolutions (backward above all) run up to 2x faster on this layout.
            state = state.to(self.embed.weight.dtype, memory_format=torch.channels_last)
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

    def weights(self, dtype: torch.dtype | None = None) -> list[torch.Tensor]:
        """(gate weight, gate bias + F17's 0.5 / 0.7, candidate weight, candidate bias) for `forward`, the kernels
        as channels-last 1 x k 2-D kernels: oneDNN runs these convolutions on a (B, m, 1, n) channels-last state
        up to 1.5x faster than Conv1d on (B, m, n). Taken once per forward pass."""
        cast = (lambda t: t) if dtype is None else (lambda t: t.to(dtype))
        layout = {"memory_format": torch.channels_last}
        return [
            cast(self.gates.weight).unsqueeze(2).contiguous(**layout),
            cast(self.gates.bias + self.gate_bias.view(-1)),
            cast(self.candidate.weight).unsqueeze(2).contiguous(**layout),
            cast(self.candidate.bias),
        ]

    def forward(
        self,
        s: torch.Tensor,
        dropout: float,
        mask: torch.Tensor | None = None,
        weights: list[torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One step on s (B, m, n), or (B, m, 1, n) channels-last as ImprovedNeuralGPU keeps it. Returns the new
        state (times `mask` when given) and this step's saturation cost (a scalar)."""
        flat = s.dim() == 3
        if flat:
            s = s.unsqueeze(2).contiguous(memory_format=torch.channels_last)
            mask = None if mask is None else mask.unsqueeze(2)
        weights = self.weights(autocast_dtype(s.device)) if weights is None else weights
        drop = dropout_scale(s, dropout) if self.training and dropout > 0 else None  # on c, shaped like s
        padding = (0, self.gates.padding[0])
        new, cost = FusedDCGRU.apply(s, *weights, drop, mask, self.limit, padding)
        return (new.squeeze(2) if flat else new), cost


class FusedDCGRU(torch.autograd.Function):
    """The DCGRU of `DCGRU.forward` and its saturation cost with a hand-written backward.

    Same maths as hard_sigmoid + chunk + hard_tanh + dropout + saturation + u*shift(s) + (1-u)*c + mask op by op
    (bench.step_speed's UnfusedImprovedNeuralGPU; tests/test_fast_step.py checks the gradients agree), including
    clamp's gradient at its bounds. The hard sigmoid's factor 0.5 goes on the gate convolution's gradients (exact:
    a power of two). relu(|x| - limit) is computed as |softshrink(x, limit)| (equal in floats),
    whose sign is the cost's derivative."""

    @staticmethod
    def forward(ctx, s, gate_w, gate_b, cand_w, cand_b, drop, mask, limit: float, padding: int, groups: int = 1):
        with torch.autocast(s.device.type, enabled=False):
            s_conv = s.to(gate_w.dtype)  # the convolutions' dtype (autocast's), the state stays in its own
            gate_pre = F.conv2d(s_conv, gate_w, gate_b, padding=padding, groups=groups).to(s.dtype)  # (B, G 2m, 1, n)
            unclamped = torch.add(gate_pre.new_full((), 0.5), gate_pre, alpha=0.5)
            g = unclamped.clamp(0.0, 1.0)
            gate_excess = F.softshrink(gate_pre, limit)
            r, u = gate_halves(g, groups)  # (B, G, m, 1, n) each
            rs = merge_groups(r * by_group(s, groups), groups).to(cand_w.dtype)
            cand_pre = F.conv2d(rs, cand_w, cand_b, padding=padding, groups=groups).to(s.dtype)  # (B, G m, 1, n)
            c = cand_pre.clamp(-1.0, 1.0)
            cand_excess = F.softshrink(cand_pre, limit)
            cost = group_sums(gate_excess.abs(), groups) + group_sums(cand_excess.abs(), groups)
            if drop is not None:
                c.mul_(drop)
            c_groups = by_group(c, groups)
            diff = shift_groups(s, groups) - c_groups
            out = merge_groups(torch.addcmul(c_groups, u, diff), groups)  # u shift(s) + (1 - u) c
            if mask is not None:
                out.mul_(mask)
        ctx.save_for_backward(
            s,
            s_conv,
            gate_w,
            cand_w,
            unclamped,
            g,
            rs,
            cand_pre,
            diff,
            drop,
            mask,
            gate_excess.sign(),
            cand_excess.sign(),
        )
        ctx.padding, ctx.groups = padding, groups
        return out, cost

    @staticmethod
    def backward(ctx, grad, grad_cost):
        s, s_conv, gate_w, cand_w, unclamped, g, rs, cand_pre, diff, drop, mask, gate_sign, cand_sign = (
            ctx.saved_tensors
        )
        groups = ctx.groups
        # The cost's gradient per group, shaped to scale a (B, G, m, 1, n) view (a scalar with one group).
        grad_cost = grad_cost if groups == 1 else grad_cost.view(1, groups, 1, 1, 1)
        grad = same_layout(grad, s)
        if mask is not None:
            grad = grad * mask
        grad_groups = by_group(grad, groups)
        r, u = gate_halves(g, groups)
        d_gates = torch.empty_like(g)  # (B, G 2m, 1, n): d r, d u side by side, as the gate convolution made them
        d_r, d_u = gate_halves(d_gates, groups)
        torch.mul(grad_groups, diff, out=d_u)
        d_c = merge_groups(torch.addcmul(grad_groups, grad_groups, u, value=-1.0), groups)  # (1 - u) grad
        if drop is not None:
            d_c.mul_(drop)
        d_cand = clamp_backward_(d_c, cand_pre, -1.0, 1.0)
        by_group(d_cand, groups).addcmul_(by_group(cand_sign, groups), grad_cost)
        d_rs, d_cand_w, d_cand_b = conv_backward(d_cand.to(cand_w.dtype), rs, cand_w, ctx.padding, groups)
        d_rs = by_group(d_rs.to(s.dtype), groups)
        torch.mul(d_rs, by_group(s, groups), out=d_r)
        d_s = torch.addcmul(shift_groups(merge_groups(grad_groups * u, groups), groups, -1), d_rs, r)
        d_s = merge_groups(d_s, groups)
        # d g / d pre-activation = 0.5 where the clamp passes, 0.5 applied after the convolution's backward
        clamp_backward_(d_gates, unclamped, 0.0, 1.0)
        by_group(d_gates, groups).addcmul_(by_group(gate_sign, groups), 2.0 * grad_cost)
        d_s_gates, d_gate_w, d_gate_b = conv_backward(d_gates.to(gate_w.dtype), s_conv, gate_w, ctx.padding, groups)
        d_s.add_(d_s_gates.to(s.dtype), alpha=0.5)
        d_gate_w.mul_(0.5)
        d_gate_b.mul_(0.5)
        return d_s, d_gate_w, d_gate_b, d_cand_w, d_cand_b, None, None, None, None, None


def group_sums(t: torch.Tensor, groups: int) -> torch.Tensor:
    """The sum of a (B, groups * m, ...) tensor: one scalar, or one per group (groups,) for a packed model."""
    if groups == 1:
        return t.sum()
    return by_group(t, groups).sum(dim=[d for d in range(t.dim() + 1) if d != 1])


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
        active, mask = padding_mask(inputs, targets, state_dims=4, dtype=self.embed.weight.dtype)  # mask (B,1,1,n)

        if inputs.device.type == "cpu" and bool(active.all()):
            mask = None  # nothing to zero: skip a pass per step (a host sync, so only where it costs none)

        def step(state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return self.cell(state, dropout, mask, weights)

        with memory_context(self.cfg.memory):
            weights = self.cell.weights(autocast_dtype(inputs.device))
            x = self.embed(inputs).transpose(1, 2)  # (B, m, n)
            cost = saturation(x, self.cfg.saturation_limit) * n
            # The state is (B, m, 1, n) channels-last between steps (see DCGRU.weights).
            state = hard_tanh(x).unsqueeze(2).contiguous(memory_format=torch.channels_last)
            if self.training and dropout > 0:
                state = state * dropout_scale(state, dropout)
            if mask is not None:
                state = state * mask
            for _ in range(n if steps is None else steps):
                state, step_cost = run_step(step, self.cfg.memory, state)
                cost = cost + step_cost
            logits = self.readout(state[:, :, 0, :]).transpose(1, 2)  # (B, n, vocab)
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
