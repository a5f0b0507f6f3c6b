"""REINFORCE (Williams 1992; the talk's slides 40-45): loss = -sum_t log pi(a_t | h_t) (G_t - b_t) with reward-to-go
G_t = sum_{j >= t} gamma^{j-t} r_j and a learned baseline b_t regressed on G_t.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from rl_tasks.learners.base import Learner, masked_mean


def returns_to_go(rewards: np.ndarray, gamma: float) -> np.ndarray:
    """(T,) G_t = sum_{j >= t} gamma^(j-t) r_j."""
    out = np.zeros(len(rewards), dtype=np.float64)
    running = 0.0
    for t in range(len(rewards) - 1, -1, -1):
        running = rewards[t] + gamma * running
        out[t] = running
    return out


def reinforce_loss(
    logits: torch.Tensor,
    choices: torch.Tensor,
    returns: torch.Tensor,
    baseline: torch.Tensor | None,
    mask: torch.Tensor,
    normalize: bool,
    entropy_coef: float,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Policy-gradient loss with reward-to-go and an optional learned baseline (regressed on the returns).
    logits (T, B, C); choices, returns, mask (T, B); baseline (T, B) or None."""
    log_probs = F.log_softmax(logits, dim=-1)
    chosen = log_probs.gather(-1, choices.unsqueeze(-1)).squeeze(-1)
    advantage = returns - (baseline.detach() if baseline is not None else 0.0)
    if normalize:
        mean = masked_mean(advantage, mask)
        std = masked_mean((advantage - mean) ** 2, mask).sqrt()
        advantage = (advantage - mean) / (std + 1e-8)
    policy = -masked_mean(chosen * advantage, mask)
    entropy = masked_mean(-(log_probs.exp() * log_probs).sum(-1), mask)
    loss = policy - entropy_coef * entropy
    value = masked_mean((baseline - returns) ** 2, mask) if baseline is not None else torch.zeros(())
    loss = loss + 0.5 * value
    parts = {"train/policy_loss": policy, "train/value_loss": value, "train/entropy": entropy}
    return loss, {key: float(part.detach()) for key, part in parts.items()}


class Reinforce(Learner):
    """Sampled behaviour; REINFORCE with reward-to-go, an optional learned baseline and an entropy bonus."""

    def value_head(self) -> bool:
        return self.cfg.baseline

    def choose(self, scores: torch.Tensor, greedy: int, rng: np.random.Generator) -> int:
        probs = torch.softmax(scores, dim=-1).numpy()
        return int(rng.choice(len(scores), p=probs / probs.sum()))

    def loss(self, out, batch, episodes, greedy_accuracy):
        cfg, mask = self.cfg, batch["mask"]
        returns = np.zeros(mask.shape, dtype=np.float64)
        for b, e in enumerate(episodes):
            returns[: len(e.rewards), b] = returns_to_go(np.asarray(e.rewards), cfg.reinforce_gamma)
        returns_t = torch.from_numpy(returns).to(out.choice.dtype).to(self.device)
        baseline = out.value[:-1] if out.value is not None else None
        return reinforce_loss(
            out.choice[:-1], batch["choices"], returns_t, baseline, mask, cfg.normalize_advantage, cfg.entropy_coef
        )
