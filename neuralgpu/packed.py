"""Packed seeds (issue #17): several runs of one cell trained in one process as one grouped model.

Each member is a whole solo `neuralgpu.train.Trainer`: its own config and seed, model, optimiser, learning rate,
curriculum, RNG streams, success test, stopping rule, reports and checkpoints. The pack replaces only the forward
and backward passes: every parameter of the members is stacked into one tensor (members' parameters become views
of their slices), and each step runs the running members as one model whose convolutions (K15's CGRUs, F17's
DCGRU) have one group per member. A member that stops leaves the pack; later steps run without it.

Exactness: a member's batches, dropout masks, gradient noise and optimiser steps are drawn and taken as in its solo
run (each member's global RNG state is swapped in around its own draws), so its curve agrees with the solo run's
within float tolerance: grouped and plain convolutions sum in different orders (tests/test_packed.py).

Lengths: K15's length curriculum draws a length per member and step. By default (`lengths="group"`) members
that drew the same length share a forward pass and each distinct length gets its own. With `lengths="pad"` all
share one: shorter members are padded to the longest and their state is frozen after their own n steps; padded
columns are masked, as the convolutions' zero border would be, so each member still computes exactly its solo
function, and the padded work is the cost (`padding_overhead`). On this CPU grouping costs less (the bench).

K15 and F17 models, memory plain, fp32, on a CPU, for now: on CUDA each member's dropout stream would need the
CUDA generator swapped too (untested here).

    python -m neuralgpu.packed --task badd --seeds 0 1 2 3 [--config run.yaml] [--max-steps N]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from neuralgpu.config import ConfigError, TrainConfig, check_pack
from neuralgpu.evaluate import error_rates
from neuralgpu.model import (
    FusedCGRU,
    FusedDCGRU,
    ImprovedNeuralGPU,
    dropout_scale,
    hard_tanh,
    masked_cross_entropy,
)
from neuralgpu.train import Report, Trainer, TrainResult
from seedcore.config import load_yaml
from seedcore.runtime import global_rng_state, set_global_rng_state

LENGTH_POLICIES = ("group", "pad")
"""How members that drew different lengths in one step share it (Pack's `lengths`; bench/packed_seeds.py measures
both): one forward pass per distinct length, or one padded pass."""

Draw = Callable[[int, tuple[int, ...]], torch.Tensor]
"""`draw(member, shape)`: that member's dropout multiplier for a state of `shape` (B, m, h, n) at its own rate,
drawn from the member's own RNG stream."""


class PackedModels:
    """S models of one config as one grouped model. Owns the stacked parameters (S, *shape); each member's
    parameters are views of its slice, so a member's optimiser step updates the pack and `load_state_dict` on a
    member writes into it. A subclass brings the grouped `forward`."""

    def __init__(self, models: list[nn.Module]):
        self.models = models
        self.cfg = models[0].cfg
        named = [dict(model.named_parameters()) for model in models]
        self.member_params: dict[str, list[nn.Parameter]] = {name: [n[name] for n in named] for name in named[0]}
        """Parameter name -> each member's parameter of that name (a view of its slice of `stacked`)."""
        self.stacked: dict[str, nn.Parameter] = {}
        for name, members in self.member_params.items():
            self.stacked[name] = nn.Parameter(torch.stack([p.detach() for p in members]))
            for i, p in enumerate(members):
                p.data = self.stacked[name].data[i]

    def zero_grad(self) -> None:
        for p in self.stacked.values():
            p.grad = None
        for model in self.models:
            model.zero_grad(set_to_none=True)

    def gradients_to_members(self, members: list[int]) -> None:
        """Add each member's slice of the stacked gradients to its own parameters' gradients (which hold what
        the member computed on its own, such as K15's relaxation pull)."""
        for name, stacked in self.stacked.items():
            if stacked.grad is None:
                continue
            for i in members:
                p = self.member_params[name][i]
                p.grad = stacked.grad[i] if p.grad is None else p.grad + stacked.grad[i]

    def forward(
        self, members: list[int], inputs: torch.Tensor, targets: torch.Tensor, lengths: list[int], draw: Draw | None
    ) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
        """One batch per member: inputs, targets (G, B, n) with member g's own length lengths[g] <= n and zeros
        beyond it. Returns each member's logits (B, lengths[g], vocab), masked cross-entropy and auxiliary loss,
        as its own model's forward would. `draw` gives the dropout multipliers (None: no dropout)."""
        raise NotImplementedError

    def weights(self, members: list[int]) -> dict[str, torch.Tensor]:
        """The members' stacked parameters, (G, *shape) each."""
        index = torch.tensor(members)
        return {name: p.index_select(0, index) for name, p in self.stacked.items()}


class PackedNeuralGPU(PackedModels):
    """K15 `NeuralGPU`s: CGRUs with relaxation copies; members of different lengths padded in one pass."""

    def forward(self, members, inputs, targets, lengths, draw):
        cfg, groups = self.cfg, len(members)
        batch, n = inputs.shape[1:]
        m, h, copies = cfg.width, cfg.height, cfg.relax_copies
        weights = self.weights(members)
        active = (inputs != 0) | (targets != 0)  # (G, B, n)
        mask = active.permute(1, 0, 2)[:, :, None, None, :].to(weights["embed.weight"].dtype)  # (B, G, 1, 1, n)
        # nn.Embedding's padding_idx: symbol 0 embeds to the zero row and sends it no gradient.
        rows = torch.arange(groups)[:, None, None]
        x = torch.tanh(weights["embed.weight"][rows, inputs]) * (inputs != 0).unsqueeze(-1)  # (G, B, n, m)
        x = x.permute(1, 0, 3, 2).reshape(batch, groups * m, n)
        x = F.conv1d(x, flat(weights["input_proj.weight"]), flat(weights["input_proj.bias"]), groups=groups)
        state = torch.cat([x.unsqueeze(2), x.new_zeros(batch, groups * m, h - 1, n)], dim=2)  # (B, G m, h, n)
        state = joined(split(state, groups) * mask).contiguous(memory_format=torch.channels_last)
        full_mask = None  # nothing to zero, as NeuralGPU.forward decides: skip a pass per CGRU
        if not bool(active.all()):
            full_mask = joined(mask.expand(batch, groups, m, h, n)).contiguous(memory_format=torch.channels_last)
        cells = [[cell_weights(weights, i, copy) for copy in range(copies)] for i in range(len(self.models[0].cgrus))]
        alive = torch.tensor(lengths).view(1, groups, 1, 1, 1)
        padding = self.models[0].cgrus[0].gates.padding
        for t in range(n):
            scales = [full_mask] * len(cells)
            if draw is not None:
                scales[-1] = dropout_scales(members, lengths, t, (batch, m, h), draw)
                if full_mask is not None:
                    scales[-1] = scales[-1] * full_mask
            new = state
            for i, cell in enumerate(cells):
                new = FusedCGRU.apply(
                    new, *cell[t % copies], scales[i], self.models[0].cgrus[i].cutoff, padding, groups
                )
            if min(lengths) <= t:  # members past their own n steps keep their state
                new = joined(torch.where(alive > t, split(new, groups), split(state, groups)))
            state = new
        logits, losses = read_out(state[:, :, 0, :], weights, targets, active, lengths)
        return logits, losses, [loss.new_zeros(()) for loss in losses]  # K15 has no auxiliary loss


class PackedImprovedNeuralGPU(PackedModels):
    """F17 `ImprovedNeuralGPU`s: one DCGRU, hard nonlinearities and each member's own saturation cost. Members of
    one pass share its length (F17's bins give every member the same lengths)."""

    def forward(self, members, inputs, targets, lengths, draw):
        cfg, groups = self.cfg, len(members)
        batch, n = inputs.shape[1:]
        if set(lengths) != {n}:
            raise ValueError("packed F17 members share each pass's length; pack them with lengths='group'")
        m = cfg.width
        weights = self.weights(members)
        active = (inputs != 0) | (targets != 0)  # (G, B, n)
        mask = None  # nothing to zero, as ImprovedNeuralGPU.forward decides: skip a pass per step
        if not bool(active.all()):
            mask = active.permute(1, 0, 2)[:, :, None, None, :].to(weights["embed.weight"].dtype)  # (B, G, 1, 1, n)
            mask = joined(mask.expand(batch, groups, m, 1, n)).contiguous(memory_format=torch.channels_last)
        rows = torch.arange(groups)[:, None, None]
        x = weights["embed.weight"][rows, inputs].permute(1, 0, 3, 2)  # (B, G, m, n)
        cost = saturation_excess(x, cfg.saturation_limit).sum(dim=(0, 2, 3)) * n  # (G,): the input layer's, by n
        state = hard_tanh(x.reshape(batch, groups * m, n)).unsqueeze(2).contiguous(memory_format=torch.channels_last)
        if draw is not None:
            state = state * dropout_scales(members, lengths, 0, (batch, m, 1), draw)
        if mask is not None:
            state = state * mask
        cell = self.models[0].cell
        gate_bias = cell.gate_bias.view(1, -1)  # F17's 0.5 (reset) and 0.7 (update)
        layout = {"memory_format": torch.channels_last}
        cell_weights = (
            flat(weights["cell.gates.weight"]).unsqueeze(2).contiguous(**layout),
            flat(weights["cell.gates.bias"] + gate_bias),
            flat(weights["cell.candidate.weight"]).unsqueeze(2).contiguous(**layout),
            flat(weights["cell.candidate.bias"]),
        )
        padding = (0, cell.gates.padding[0])
        for _ in range(n):
            drop = dropout_scales(members, lengths, 0, (batch, m, 1), draw) if draw is not None else None
            state, step_cost = FusedDCGRU.apply(state, *cell_weights, drop, mask, cell.limit, padding, groups)
            cost = cost + step_cost
        logits, losses = read_out(state[:, :, 0, :], weights, targets, active, lengths)
        return logits, losses, list((cost / (n * n * batch)).unbind(0))


def saturation_excess(x: torch.Tensor, limit: float) -> torch.Tensor:
    """relu(|x| - limit) elementwise: `model.saturation` before its sum."""
    return F.relu(x.abs() - limit)


def read_out(
    state: torch.Tensor,
    weights: dict[str, torch.Tensor],
    targets: torch.Tensor,
    active: torch.Tensor,
    lengths: list[int],
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Each member's logits (B, its length, vocab) from the grouped row-0 state (B, G m, n), and its masked
    cross-entropy."""
    groups, batch, n = len(lengths), state.shape[0], state.shape[-1]
    readout = F.conv1d(state, flat(weights["readout.weight"]), flat(weights["readout.bias"]), groups=groups)
    readout = readout.view(batch, groups, -1, n)  # (B, G, vocab, n)
    logits, losses = [], []
    for g, length in enumerate(lengths):
        member_logits = readout[:, g, :, :length].transpose(1, 2)  # (B, length, vocab)
        logits.append(member_logits)
        losses.append(masked_cross_entropy(member_logits, targets[g, :, :length], active[g, :, :length]))
    return logits, losses


def split(t: torch.Tensor, groups: int) -> torch.Tensor:
    """(B, G c, ...) -> a (B, G, c, ...) view, also for one group (`model.by_group` returns one group as it is)."""
    return t.view(t.shape[0], groups, t.shape[1] // groups, *t.shape[2:])


def joined(t: torch.Tensor) -> torch.Tensor:
    """(B, G, c, ...) -> (B, G c, ...)."""
    return t.reshape(t.shape[0], t.shape[1] * t.shape[2], *t.shape[3:])


def flat(weight: torch.Tensor) -> torch.Tensor:
    """(G, out, ...) -> (G out, ...): the members' weights as one grouped convolution's."""
    return weight.reshape(weight.shape[0] * weight.shape[1], *weight.shape[2:])


def cell_weights(weights: dict[str, torch.Tensor], cell: int, copy: int) -> tuple[torch.Tensor, ...]:
    """The grouped (gate weight, gate bias + 1, candidate weight, candidate bias) of one CGRU's relaxation copy,
    as `CGRU.copies` gives them to one model."""
    layout = {"memory_format": torch.channels_last}
    prefix = f"cgrus.{cell}"
    return (
        flat(weights[f"{prefix}.gates.weight"][:, copy]).contiguous(**layout),
        flat(weights[f"{prefix}.gates.bias"][:, copy] + 1.0),
        flat(weights[f"{prefix}.candidate.weight"][:, copy]).contiguous(**layout),
        flat(weights[f"{prefix}.candidate.bias"][:, copy]),
    )


def dropout_scales(
    members: list[int], lengths: list[int], t: int, shape: tuple[int, int, int], draw: Draw
) -> torch.Tensor:
    """The grouped dropout multiplier of step t: member g's own draw over its own length while it still runs
    (t < lengths[g]), zero elsewhere. (B, G m, h, n) channels-last."""
    batch, m, h = shape
    n, groups = max(lengths), len(members)
    layout = {"memory_format": torch.channels_last}
    scale = (torch.empty if min(lengths) == n else torch.zeros)(batch, groups * m, h, n).contiguous(**layout)
    blocks = split(scale, groups)  # (B, G, m, h, n) views into `scale`
    for g, (member, length) in enumerate(zip(members, lengths, strict=True)):
        if t < length:
            blocks[:, g, :, :, :length] = draw(member, (batch, m, h, length))
    return scale


def padding_overhead(lengths: list[int]) -> float:
    """The grouped step's convolution work over the members' own: each member pays the longest length's n x n
    (steps x columns) instead of its own."""
    longest = max(lengths)
    return len(lengths) * longest**2 / sum(length**2 for length in lengths)


class Pack:
    """Trains the members as one pack; `run()` returns each member's TrainResult, in the members' order."""

    def __init__(
        self,
        cfgs: list[TrainConfig],
        reports: list[Report | None] | None = None,
        checkpoint_dirs: list[str | None] | None = None,
        resume_from: list[str | None] | None = None,
        lengths: str = "group",
    ):
        check_pack(cfgs)
        if lengths not in LENGTH_POLICIES:
            raise ConfigError(f"pack: lengths is {lengths!r}; use one of {', '.join(LENGTH_POLICIES)}.")
        self.lengths = lengths
        reports = reports or [None] * len(cfgs)
        checkpoint_dirs = checkpoint_dirs or [None] * len(cfgs)
        self.members: list[Trainer] = []
        self.rng: list[dict[str, Any]] = []
        """Each member's global RNG state (Python, NumPy, torch) while another member's is in place."""
        for cfg, report, directory, checkpoint in zip(
            cfgs, reports, checkpoint_dirs, resume_from or [None] * len(cfgs), strict=True
        ):
            member = Trainer(cfg, report, directory)
            if checkpoint:
                member.load(checkpoint)
            self.members.append(member)
            self.rng.append(global_rng_state(cuda=False))
        if self.members[0].device.type != "cpu":
            raise ConfigError(
                f"pack: device {self.members[0].device}; packed seeds run on a CPU for now (on CUDA each member's "
                "dropout stream is not yet its own). Set device: cpu, or train one seed per run."
            )
        packed = PackedImprovedNeuralGPU if isinstance(self.members[0].model, ImprovedNeuralGPU) else PackedNeuralGPU
        if packed is PackedImprovedNeuralGPU and lengths != "group":
            raise ConfigError("pack: F17 members share each pass's length; pack them with lengths='group'.")
        self.model = packed([member.model for member in self.members])
        self.padding: list[float] = []
        """padding_overhead of each forward pass, for the benchmark."""
        self.forwards: list[int] = []
        """Forward passes of each batch slot of each step (more than one when lengths are grouped)."""

    @contextmanager
    def own_rng(self, i: int) -> Iterator[None]:
        """Member i's global RNG state in place (for its draws: dropout, gradient noise, evaluation)."""
        set_global_rng_state(self.rng[i])
        try:
            yield
        finally:
            self.rng[i] = global_rng_state(cuda=False)

    def draw(self, member: int, shape: tuple[int, ...], rate: float) -> torch.Tensor:
        """Member `member`'s dropout multiplier for a (B, m, h, n) state, from its own torch stream only (the
        other generators are not touched by a draw, so only torch's is swapped)."""
        own = self.rng[member]
        saved = torch.get_rng_state()
        torch.set_rng_state(own["torch"])
        like = torch.empty(shape).contiguous(memory_format=torch.channels_last)
        scale = dropout_scale(like, rate)
        own["torch"] = torch.get_rng_state()
        torch.set_rng_state(saved)
        return scale

    def step(self, running: list[int]) -> list[int]:
        """One training step of every running member; returns the members whose loss was not finite (they did
        not update, as a solo run that diverges)."""
        samples = {i: self.members[i].sample_step() for i in running}
        slots = max(len(batches) for _, batches in samples.values())
        losses: dict[int, list[torch.Tensor]] = {i: [] for i in running}
        saturations: dict[int, list[torch.Tensor]] = {i: [] for i in running}
        errors: dict[int, list[tuple[int, float, float]]] = {i: [] for i in running}
        for slot in range(slots):
            filled = [i for i in running if slot < len(samples[i][1])]
            groups = self.length_groups(filled, [samples[i][1][slot][0] for i in filled])
            self.forwards.append(len(groups))
            for group in groups:
                self.forward_group(group, [samples[i][1][slot] for i in group], losses, saturations, errors)
        self.model.zero_grad()
        diverged, objectives, means = [], [], {}
        for i in running:
            loss = torch.stack(losses[i]).mean()
            if not torch.isfinite(loss):
                diverged.append(i)
                continue
            saturation = torch.stack(saturations[i]).mean()
            means[i] = (loss, saturation)
            objectives.append(self.members[i].objective(loss, saturation))
        if objectives:
            torch.stack(objectives).sum().backward()
        updating = [i for i in running if i not in diverged]
        self.model.gradients_to_members(updating)
        for i in updating:
            with self.own_rng(i):
                loss, saturation = means[i]
                self.members[i].update(samples[i][0], float(loss.detach()), float(saturation.detach()), errors[i])
        return diverged

    def length_groups(self, members: list[int], lengths: list[int]) -> list[list[int]]:
        """The forward passes of one batch slot: all members at once, padded to the longest ("pad"), or one pass
        per distinct length ("group": no padded work, more passes)."""
        if self.lengths == "pad":
            return [members]
        by_length: dict[int, list[int]] = {}
        for member, length in zip(members, lengths, strict=True):
            by_length.setdefault(length, []).append(member)
        return list(by_length.values())

    def forward_group(
        self,
        group: list[int],
        batches: list[tuple[int, torch.Tensor, torch.Tensor]],
        losses: dict[int, list[torch.Tensor]],
        saturations: dict[int, list[torch.Tensor]],
        errors: dict[int, list[tuple[int, float, float]]],
    ) -> None:
        """One grouped forward pass over `group`'s batches (length, inputs, targets); appends each member's loss,
        auxiliary loss and (length, sequence error, digit error)."""
        lengths = [length for length, _, _ in batches]
        inputs, targets = padded([b[1] for b in batches]), padded([b[2] for b in batches])
        rates = {
            i: self.members[i].variant.dropout_rate(self.members[i].cfg, length)
            for i, length in zip(group, lengths, strict=True)
        }
        training = self.members[0].model.training and any(rates.values())

        def draw(member: int, shape: tuple[int, ...]) -> torch.Tensor:
            return self.draw(member, shape, rates[member])

        self.padding.append(padding_overhead(lengths))
        logits, member_losses, member_saturations = self.model.forward(
            group, inputs, targets, lengths, draw if training else None
        )
        for g, i in enumerate(group):
            losses[i].append(member_losses[g])
            saturations[i].append(member_saturations[g])
            errors[i].append((lengths[g], *error_rates(logits[g].detach().argmax(dim=-1), targets[g, :, : lengths[g]])))

    def run(
        self,
        finished: Callable[[int, TrainResult], None] | None = None,
        stepped: Callable[[], None] | None = None,
    ) -> list[TrainResult]:
        """Train until every member stops; `finished(i, result)` is called as member i stops (the others go on),
        `stepped()` after each step's members have reported (so a caller can save all their checkpoints once)."""
        results: dict[int, TrainResult] = {}

        def end(i: int, reason: str) -> None:
            results[i] = self.members[i].finish(reason)
            if finished is not None:
                finished(i, results[i])

        running = []
        for i, member in enumerate(self.members):
            with self.own_rng(i):
                reason = member.stop_reason()
                if reason is None:
                    running.append(i)
                else:
                    end(i, reason)
        while running:
            started = time.perf_counter()
            diverged = self.step(running)
            share = (time.perf_counter() - started) / len(running)
            for i in list(running):
                member = self.members[i]
                with self.own_rng(i):
                    member.progress.window.seconds += share
                    if i in diverged:
                        member.diverged_step = member.progress.step + 1
                        reason = "diverged"
                    else:
                        own = time.perf_counter()
                        member.after_step()
                        # A member's time is its share of the pack's step and its own evaluations: what it costs.
                        member.add_time(share + time.perf_counter() - own)
                        reason = member.after_advance()
                    if reason is not None:
                        end(i, reason)
                        running.remove(i)
            if stepped is not None:
                stepped()
        return [results[i] for i in range(len(self.members))]


def padded(batches: list[torch.Tensor]) -> torch.Tensor:
    """(B, n_g) tensors -> (G, B, max n_g), zeros (padding) after each one's own length."""
    n = max(b.shape[1] for b in batches)
    return torch.stack([F.pad(b, (0, n - b.shape[1])) for b in batches])


def train_pack(
    cfgs: list[TrainConfig],
    reports: list[Report | None] | None = None,
    checkpoint_dirs: list[str | None] | None = None,
    resume_from: list[str | None] | None = None,
    finished: Callable[[int, TrainResult], None] | None = None,
    stepped: Callable[[], None] | None = None,
) -> list[TrainResult]:
    """Train the configs (one cell, several seeds) as one pack; each member reports and checkpoints as its solo
    run would, to its own `reports[i]` and `checkpoint_dirs[i]`, and resumes from `resume_from[i]`.
    `finished(i, result)` is called as member i stops, while the others go on; `stepped()` after every step."""
    return Pack(cfgs, reports, checkpoint_dirs, resume_from).run(finished, stepped)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train several seeds of one Neural GPU cell as one pack.")
    parser.add_argument("--config", help="a run YAML (neuralgpu.train's); its seed is replaced by --seeds")
    parser.add_argument("--seeds", type=int, nargs="+", required=True)
    parser.add_argument("--task", default=None)
    parser.add_argument("--width", type=int, default=None)
    parser.add_argument("--max-steps", type=int, default=None)
    args = parser.parse_args(argv)
    base = load_yaml(args.config) if args.config else {"model": "k15"}
    overrides = {"task": args.task, "width": args.width, "max_steps": args.max_steps}
    base.update({k: v for k, v in overrides.items() if v is not None})
    try:
        cfgs = [TrainConfig.from_dict({**base, "seed": seed}, source="--seeds") for seed in args.seeds]
        results = train_pack(cfgs)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    for seed, result in zip(args.seeds, results, strict=True):
        print(f"seed {seed}: {result.stop_reason} at step {result.steps}, success {result.success}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
