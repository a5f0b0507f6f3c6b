"""Error metrics and evaluation at long test lengths, in bounded memory.

Sequence error: share of examples with any wrong symbol at a target position that is not padding.
Digit error: share of wrong symbols over those positions. (shared/reference/neural_gpu.md, "Evaluation")
"""

from __future__ import annotations

import numpy as np
import torch

from neuralgpu.tasks import random_batch


def count_errors(predictions: torch.Tensor, targets: torch.Tensor) -> tuple[int, int, int]:
    """predictions, targets: (B, n) symbols. Returns (wrong sequences, wrong digits, digits scored)."""
    scored = targets != 0
    wrong = (predictions != targets) & scored  # (B, n)
    return int(wrong.any(dim=1).sum()), int(wrong.sum()), int(scored.sum())


def error_rates(predictions: torch.Tensor, targets: torch.Tensor) -> tuple[float, float]:
    """(sequence error, digit error) of one batch."""
    wrong_seqs, wrong_digits, digits = count_errors(predictions, targets)
    return wrong_seqs / predictions.shape[0], wrong_digits / max(digits, 1)


@torch.no_grad()
def predict(
    model: torch.nn.Module,
    inputs: np.ndarray,
    targets: np.ndarray,
    chunk: int = 16,
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """The model's answers (B, n) to a batch, `chunk` examples per forward pass, dropout off."""
    was_training = model.training
    model.eval()
    answers = []
    try:
        for start in range(0, len(inputs), chunk):
            x, y = (torch.from_numpy(a[start : start + chunk]).to(device) for a in (inputs, targets))
            logits, _ = model(x, y)
            answers.append(logits.argmax(dim=-1).cpu().numpy())
    finally:
        model.train(was_training)
    return np.concatenate(answers)


def error_row(answers: np.ndarray, targets: np.ndarray, length: int) -> dict[str, float]:
    """{length, seq_error, digit_error, examples} of answers (B, n) against targets (B, n)."""
    wrong_seqs, wrong_digits, digits = count_errors(torch.from_numpy(answers), torch.from_numpy(targets))
    examples = len(targets)
    return {
        "length": length,
        "seq_error": wrong_seqs / examples,
        "digit_error": wrong_digits / max(digits, 1),
        "examples": examples,
    }


def evaluate_examples(
    model: torch.nn.Module,
    inputs: np.ndarray,
    targets: np.ndarray,
    length: int,
    chunk: int = 16,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """The error row of the model's answers to given examples (B, n), `chunk` examples per pass."""
    return error_row(predict(model, inputs, targets, chunk, device), targets, length)


def evaluate_length(
    model: torch.nn.Module,
    task: str,
    length: int,
    examples: int,
    rng: np.random.Generator,
    chunk: int = 16,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Sequence and digit error of `examples` fresh random examples at `length`, `chunk` examples per pass.

    Memory is bounded by one chunk: no graph is kept and the state is (chunk, m, h, length) at any time, so
    length 2001 runs on a CPU. Examples are generated one chunk at a time too.
    """
    answers, targets = [], []
    for start in range(0, examples, chunk):
        x, y = random_batch(task, length, min(chunk, examples - start), rng)
        answers.append(predict(model, x, y, chunk, device))
        targets.append(y)
    return error_row(np.concatenate(answers), np.concatenate(targets), length)
