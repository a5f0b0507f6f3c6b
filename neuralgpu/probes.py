"""Failure probes for a trained Neural GPU (talk slides 23-32; P16 section "Limitations").

Trained on random inputs, a Neural GPU works reliably only on random inputs: it cannot carry over long chains,
and long stretches of equal digits confuse it (0000...0002 x 0000...0001 gave 0...00176666666668850...007).
Each probe returns table rows (dicts) so that a notebook or the sweep record can show them as they are.
"""

from __future__ import annotations

import numpy as np
import torch

from neuralgpu.evaluate import evaluate_examples, predict
from neuralgpu.tasks import encode, encode_ints, format_example, get_task, operands_summing_to, random_batch


def carry_chain_curve(
    model: torch.nn.Module,
    task: str,
    carries: tuple[int, ...],
    examples: int,
    rng: np.random.Generator,
    chunk: int = 16,
    device: torch.device | str = "cpu",
) -> list[dict]:
    """Error against carry-chain length c, for addition: operands with a + b = base^c (half the examples) or
    base^c - 1 (the other half). All points use one length, 2 * (max c + 1) + 1, so only c varies."""
    spec = get_task(task)
    if spec.kind != "add" or spec.arity != 2:
        return []
    length = 2 * (max(carries) + 1) + 1
    limit = spec.base ** (max(carries) + 1)
    rows = []
    for c in carries:
        pairs = [operands_summing_to(spec.base**c - (i % 2), limit, rng) for i in range(examples)]
        inputs, targets = encode_ints(task, pairs, length)
        row = evaluate_examples(model, inputs, targets, length, chunk, device)
        rows.append({"probe": "carry_chain", "carry": c, **row})
    return rows


def equal_stretch_table(
    model: torch.nn.Module, task: str, lengths: tuple[int, ...], device: torch.device | str = "cpu"
) -> list[dict]:
    """The talk's 0000...0002 op 0000...0001 and 0000...0002 op 0000...0002 at each length, as input, expected
    answer and the model's answer (MSB first)."""
    spec = get_task(task)
    if not spec.is_arithmetic or spec.arity != 2:
        return []
    rows = []
    for length in lengths:
        for operands in ([2, 1], [2, 2]):
            inputs, targets = encode(task, operands, length=length)
            answer = predict(model, inputs[None], targets[None], 1, device)[0]
            shown = format_example(task, inputs, answer)
            rows.append(
                {
                    "probe": "equal_stretch",
                    "length": length,
                    "operands": f"{operands[0]} {spec.operator} {operands[1]}",
                    "example": shown,
                    "correct": bool((answer == targets).all()),
                }
            )
    return rows


def structured_vs_random(
    model: torch.nn.Module,
    task: str,
    length: int,
    examples: int,
    rng: np.random.Generator,
    chunk: int = 16,
    device: torch.device | str = "cpu",
) -> list[dict]:
    """Error on uniform random inputs next to structured ones of the same length: operands that are powers of the
    base, one less than a power, or a single digit repeated (long equal stretches)."""
    spec = get_task(task)
    if not spec.is_arithmetic or spec.arity != 2:
        return []
    k = (length - 1) // 2
    base = spec.base

    def structured() -> int:
        j = int(rng.integers(1, k + 1))
        kind = int(rng.integers(3))
        if kind == 0:
            return base ** (j - 1)
        if kind == 1:
            return base**j - 1
        return int(rng.integers(1, base)) * (base**j - 1) // (base - 1)  # d repeated j times

    inputs, targets = random_batch(task, length, examples, rng)
    rows = [{"probe": "random", **evaluate_examples(model, inputs, targets, length, chunk, device)}]
    inputs, targets = encode_ints(task, [[structured(), structured()] for _ in range(examples)], length)
    rows.append({"probe": "structured", **evaluate_examples(model, inputs, targets, length, chunk, device)})
    return rows


def run_probes(
    model: torch.nn.Module,
    task: str,
    carries: tuple[int, ...],
    examples: int,
    length: int,
    rng: np.random.Generator,
    chunk: int = 16,
    device: torch.device | str = "cpu",
) -> list[dict]:
    """Every probe that applies to `task`, as one table (empty for the sequence tasks)."""
    return [
        *carry_chain_curve(model, task, carries, examples, rng, chunk, device),
        *equal_stretch_table(model, task, tuple(sorted({min(length, 21), length})), device),
        *structured_vs_random(model, task, length, examples, rng, chunk, device),
    ]
