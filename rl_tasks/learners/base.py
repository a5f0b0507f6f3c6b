"""What every learner shares: the interface the RL trainer calls, the masked mean and the symbol head's loss.

A learner decides the behaviour policy's choice at each step and turns a batch of played episodes into a loss.
The trainer asks it and never branches on the agent's name.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F


class Learner:
    """One RL learning rule, built once per run from its config (`RLConfig`) and device."""

    def __init__(self, cfg: Any, device: torch.device):
        self.cfg = cfg
        self.device = device

    def value_head(self) -> bool:
        """Whether the controller needs a value head (a learned baseline)."""
        return False

    def start_episode(self, episodes: int, greedy_accuracy: float) -> None:
        """Called before each episode with the episodes played so far and the greedy policy's recent accuracy."""

    def choose(self, scores: torch.Tensor, greedy: int, rng: np.random.Generator) -> int:
        """The behaviour policy's choice given one step's (C,) float64 CPU scores and their argmax `greedy`."""
        raise NotImplementedError

    def loss(self, out: Any, batch: dict[str, torch.Tensor], episodes: list, greedy_accuracy: float):
        """(loss, parts): the loss of the controller's output `out` (choice: (T+1, B, C)) on the padded `batch` of
        `episodes`, and its parts by metric name (floats)."""
        raise NotImplementedError

    def metrics(self, episodes: int, greedy_accuracy: float) -> dict[str, float]:
        """Learner-specific metrics reported with every window."""
        return {}


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1)


def symbol_loss(symbol_logits: torch.Tensor, labels: torch.Tensor, write_mask: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the symbol head on the symbols that were due, at the steps that wrote (LSAE)."""
    nll = F.cross_entropy(symbol_logits.flatten(0, 1), labels.clamp(min=0).flatten(), reduction="none")
    return masked_mean(nll.view_as(labels), write_mask)
