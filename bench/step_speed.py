"""Training-step time of our Neural GPU against a plain eager PyTorch reference with the same convolution FLOPs.

The reference is the straightforward implementation a researcher would write: separate u, r and candidate
convolutions, the same nonlinearities written op by op, `F.dropout`, Adam, a fixed batch. Ours is the trainer's
whole step (data, forward, backward, clipping, relaxation pull, Adam, metrics). Each configuration runs both
alternately in one process (reference, ours, reference, ...) and reports medians, so load from other processes
hits both alike. `unfused` (--unfused) also times our model written op by op as it was before the fused CGRU,
through the same trainer step: the before/after of the fusion in the same run.

    python -m bench.step_speed [--repeats 5] [--threads 1] [--unfused]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.common import fixed_length_config
from neuralgpu.model import (
    ImprovedNeuralGPU,
    NeuralGPU,
    hard_sigmoid,
    hard_tanh,
    masked_cross_entropy,
    padding_mask,
    saturation,
    shift_maps,
    sigmoid_cutoff,
)
from neuralgpu.tasks import VOCAB_SIZE, random_batch
from neuralgpu.train import Trainer

CONFIGS = [("k15", 24), ("k15", 128), ("f17", 96)]
"""(model, width) pairs of issue #17's target: length 41, batch 32."""


# --- the plain eager reference --------------------------------------------------------------------------------
class ReferenceCGRU(nn.Module):
    def __init__(self, m: int, cutoff: float = 1.2):
        super().__init__()
        self.u, self.r, self.c = (nn.Conv2d(m, m, 3, padding=1) for _ in range(3))
        self.cutoff = cutoff

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        u = sigmoid_cutoff(self.u(s) + 1.0, self.cutoff)
        r = sigmoid_cutoff(self.r(s) + 1.0, self.cutoff)
        c = torch.tanh(self.c(r * s))
        return u * s + (1 - u) * c


class ReferenceNeuralGPU(nn.Module):
    """K15 without relaxation copies or padding masks: embed, n steps of 2 CGRUs with dropout, read out row 0."""

    def __init__(self, m: int, height: int = 4):
        super().__init__()
        self.height = height
        self.embed = nn.Embedding(VOCAB_SIZE, m)
        self.input_proj = nn.Conv1d(m, m, 1)
        self.cgrus = nn.ModuleList([ReferenceCGRU(m), ReferenceCGRU(m)])
        self.readout = nn.Conv1d(m, VOCAB_SIZE, 1)

    def forward(self, inputs: torch.Tensor, targets: torch.Tensor, dropout: float) -> torch.Tensor:
        batch, n = inputs.shape
        x = self.input_proj(torch.tanh(self.embed(inputs)).transpose(1, 2))  # (B, m, n)
        s = torch.cat([x.unsqueeze(2), x.new_zeros(batch, x.shape[1], self.height - 1, n)], dim=2)  # (B, m, h, n)
        for _ in range(n):
            for cgru in self.cgrus:
                s = cgru(s)
            s = F.dropout(s, dropout, self.training)
        logits = self.readout(s[:, :, 0, :])  # (B, vocab, n)
        return F.cross_entropy(logits, targets)


class ReferenceDCGRU(nn.Module):
    def __init__(self, m: int, limit: float = 0.9):
        super().__init__()
        self.r, self.u, self.c = (nn.Conv1d(m, m, 3, padding=1) for _ in range(3))
        self.limit = limit

    def forward(self, s: torch.Tensor, dropout: float) -> tuple[torch.Tensor, torch.Tensor]:
        r_pre, u_pre = self.r(s) + 0.5, self.u(s) + 0.7
        r, u = hard_sigmoid(r_pre), hard_sigmoid(u_pre)
        c_pre = self.c(r * s)
        c = F.dropout(hard_tanh(c_pre), dropout, self.training)
        cost = saturation(r_pre, self.limit) + saturation(u_pre, self.limit) + saturation(c_pre, self.limit)
        return u * shift_maps(s) + (1 - u) * c, cost


class ReferenceImprovedNeuralGPU(nn.Module):
    """F17 without padding masks: one shared DCGRU applied n times, the saturation cost added to the loss."""

    def __init__(self, m: int):
        super().__init__()
        self.embed = nn.Embedding(VOCAB_SIZE, m)
        self.cell = ReferenceDCGRU(m)
        self.readout = nn.Conv1d(m, VOCAB_SIZE, 1)

    def forward(self, inputs: torch.Tensor, targets: torch.Tensor, dropout: float) -> torch.Tensor:
        n = inputs.shape[1]
        x = self.embed(inputs).transpose(1, 2)  # (B, m, n)
        cost = saturation(x, 0.9) * n
        s = F.dropout(hard_tanh(x), dropout, self.training)
        for _ in range(n):
            s, step_cost = self.cell(s, dropout)
            cost = cost + step_cost
        return F.cross_entropy(self.readout(s), targets) + 1e-3 * cost / (n * n * inputs.shape[0])


def reference_step(model_name: str, width: int, length: int, batch: int) -> Callable[[], float]:
    """One plain training step (forward, backward, Adam) on a fixed batch, as a callable returning the loss."""
    torch.manual_seed(0)
    model = ReferenceNeuralGPU(width) if model_name == "k15" else ReferenceImprovedNeuralGPU(width)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    inputs, targets = (torch.from_numpy(a) for a in random_batch("badd", length, batch, np.random.default_rng(0)))
    dropout = min(0.15 * 8 / length, 0.9) if model_name == "k15" else 0.1  # the recipes' rates

    def step() -> float:
        loss = model(inputs, targets, dropout)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    return step


# --- our model written op by op, as before the fused CGRU (the tests' formulation too) ------------------------
def bernoulli_dropout(x: torch.Tensor, rate: float) -> torch.Tensor:
    """F.dropout's own computation (a bernoulli_ pass over the whole tensor)."""
    return x * torch.empty_like(x).bernoulli_(1.0 - rate).div_(1.0 - rate)


class UnfusedNeuralGPU(NeuralGPU):
    """NeuralGPU's maths op by op with autograd through every op; same parameters and state_dict."""

    dropout = staticmethod(bernoulli_dropout)
    """How dropout is drawn (tests swap in the model's `dropout_scale` for the same masks)."""

    def forward(self, inputs, targets=None, dropout=0.0, steps=None):
        batch, n = inputs.shape
        active, mask = padding_mask(inputs, targets, state_dims=4, dtype=self.embed.weight.dtype)
        x = self.input_proj(torch.tanh(self.embed(inputs)).transpose(1, 2))  # (B, m, n)
        rest = x.new_zeros(batch, self.cfg.width, self.cfg.height - 1, n)
        state = torch.cat([x.unsqueeze(2), rest], dim=2) * mask  # (B, m, h, n)
        for t in range(n if steps is None else steps):
            copy = t % self.cfg.relax_copies
            for cgru in self.cgrus:
                u, r = sigmoid_cutoff(cgru.gates(state, copy) + 1.0, cgru.cutoff).chunk(2, dim=1)
                c = torch.tanh(cgru.candidate(r * state, copy))
                state = (u * state + (1.0 - u) * c) * mask
            if self.training and dropout > 0:
                state = self.dropout(state, dropout)
        logits = self.readout(state[:, :, 0, :]).transpose(1, 2)  # (B, n, vocab)
        return logits, masked_cross_entropy(logits, targets, active)


class UnfusedImprovedNeuralGPU(ImprovedNeuralGPU):
    """ImprovedNeuralGPU's maths op by op with autograd through every op; same parameters and state_dict."""

    dropout = staticmethod(bernoulli_dropout)

    def forward(self, inputs, targets=None, dropout=0.0, steps=None):
        batch, n = inputs.shape
        limit, drop = self.cfg.saturation_limit, self.training and dropout > 0
        active, mask = padding_mask(inputs, targets, state_dims=3, dtype=self.embed.weight.dtype)
        x = self.embed(inputs).transpose(1, 2)  # (B, m, n)
        cost = saturation(x, limit) * n
        state = hard_tanh(x)
        state = (self.dropout(state, dropout) if drop else state) * mask
        cell = self.cell
        for _ in range(n if steps is None else steps):
            gate_pre = cell.gates(state) + cell.gate_bias  # (B, 2m, n)
            r, u = hard_sigmoid(gate_pre).chunk(2, dim=1)
            candidate_pre = cell.candidate(r * state)
            c = hard_tanh(candidate_pre)
            c = self.dropout(c, dropout) if drop else c
            cost = cost + saturation(gate_pre, limit) + saturation(candidate_pre, limit)
            state = (u * shift_maps(state) + (1.0 - u) * c) * mask
        logits = self.readout(state).transpose(1, 2)  # (B, n, vocab)
        self.saturation_cost = cost / (n * n * batch)
        return logits, masked_cross_entropy(logits, targets, active)


UNFUSED = {NeuralGPU: UnfusedNeuralGPU, ImprovedNeuralGPU: UnfusedImprovedNeuralGPU}


def our_step(model_name: str, width: int, length: int, batch: int, unfused: bool = False) -> Callable[[], float]:
    """The trainer's own training step at one fixed length; `unfused` swaps in the op-by-op model."""
    cfg = fixed_length_config(
        model_name, width, length, batch, torch.get_num_threads(), eval_every=10**9, advance_every=10**9
    )
    trainer = Trainer(cfg, report=None, checkpoint_dir=None)
    if unfused:
        trainer.model.__class__ = UNFUSED[type(trainer.model)]  # same parameters, optimiser and RNG streams
    return trainer.train_step


def interleaved_times(steps: dict[str, Callable[[], float]], repeats: int) -> dict[str, dict[str, list[float]]]:
    """Wall and CPU (this process) milliseconds of each step, the steps called in turn `repeats` times after one
    warm-up each. Returns {"wall": {name: [ms, ...]}, "cpu": {...}}, index i = round i."""
    times = {clock: {name: [] for name in steps} for clock in ("wall", "cpu")}
    for step in steps.values():
        step()  # warm-up: allocator, kernels, optimiser state
    for _ in range(repeats):
        for name, step in steps.items():
            wall, cpu = time.perf_counter(), time.process_time()
            step()
            times["wall"][name].append(1e3 * (time.perf_counter() - wall))
            times["cpu"][name].append(1e3 * (time.process_time() - cpu))
    return times


def paired_ratio(times: dict[str, list[float]], name: str) -> float:
    """Median over rounds of `name`'s time over the reference's in the same round (cancels slow load swings)."""
    return statistics.median(t / r for t, r in zip(times[name], times["reference"], strict=True))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed steps of each (width 128: 3)")
    parser.add_argument("--length", type=int, default=41)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--unfused", action="store_true", help="also time our model written op by op")
    parser.add_argument("--configs", nargs="+", default=[f"{m}:{w}" for m, w in CONFIGS], help="model:width ...")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(
        f"Step time against a plain eager reference (CPU, {args.threads} thread(s), length {args.length}, "
        f"batch {args.batch}; interleaved rounds; ms: wall-clock medians; ratio: median of per-round ratios, "
        f"by wall clock and by this process's CPU time; target ours/reference <= 0.7; load average "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)"
    )
    names = ["ours", "unfused"] if args.unfused else ["ours"]
    print(f"{'config':>10} {'reference ms':>13}" + "".join(f" {n + ' ms':>11} {'ratio':>6} {'cpu':>5}" for n in names))
    for config in args.configs:
        model_name, width = config.split(":")[0], int(config.split(":")[1])
        steps = {
            "reference": reference_step(model_name, width, args.length, args.batch),
            "ours": our_step(model_name, width, args.length, args.batch),
        }
        if args.unfused:
            steps["unfused"] = our_step(model_name, width, args.length, args.batch, unfused=True)
        times = interleaved_times(steps, args.repeats if width < 128 else min(args.repeats, 3))
        wall = {name: statistics.median(t) for name, t in times["wall"].items()}
        row = f"{config:>10} {wall['reference']:>13.1f}"
        for name in names:
            wall_ratio, cpu_ratio = paired_ratio(times["wall"], name), paired_ratio(times["cpu"], name)
            row += f" {wall[name]:>11.1f} {wall_ratio:>6.2f} {cpu_ratio:>5.2f}"
        print(row, flush=True)


if __name__ == "__main__":
    main()
