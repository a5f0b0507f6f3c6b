"""Learning targets and losses: pure functions over one episode's arrays or a padded batch.

Q-learning (LSAE, from the official code's q_classic / q_watkins and their `_dynamic` variants):
- Dynamic discount. V(s_t) = number of targets still to emit at step t. The network estimates Q^ = Q / V, so
  Q^ stays in [0, 1] with rewards in {0, 1}, whatever the episode length; the one-step target is
      Q^(s_t, a_t) <- r_t / V_t + (V_{t+1} / V_t) * max_a Q^(s_{t+1}, a).
  A fixed discount gamma uses Q itself: Q(s_t, a_t) <- r_t + gamma * max_a Q(s_{t+1}, a).
- Watkins Q(lambda) (Sutton & Barto; lambda = 1 within greedy segments): sum the rewards from t along the steps
  whose actions were greedy, and bootstrap from max_a Q at the first later step k whose action was exploratory:
      Q(s_t, a_t) <- r_t + gamma r_{t+1} + ... + gamma^{k-1-t} r_{k-1} + gamma^{k-t} max_a Q(s_k, a)
  (dynamic: the rewards and V_k max_a Q^(s_k, a), all divided by V_t). Step t's own action may be exploratory:
  its target is always about (s_t, a_t). One-step Q-learning is Watkins with every step cut.
- The episode's end: a terminated episode has value 0 after its last step; a truncated one (the 200-step
  TimeLimit) bootstraps from its final state.

REINFORCE (Williams 1992; the talk's slides 40-45): loss = -sum_t log pi(a_t | h_t) (G_t - b_t) with reward-to-go
G_t = sum_{j >= t} gamma^{j-t} r_j and a learned baseline b_t regressed on G_t.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def q_targets(
    rewards: np.ndarray,
    values_left: np.ndarray | None,
    max_q: np.ndarray,
    cut: np.ndarray,
    bootstrap: bool,
    gamma: float | None,
    watkins: bool,
) -> np.ndarray:
    """Targets for the chosen actions of one episode of T steps.

    rewards: (T,) r_t. values_left: (T+1,) V_t, targets still due at step t (used when gamma is None, the dynamic
    discount). max_q: (T+1,) max_a of the network's estimate at each state (Q^ when dynamic, else Q). cut: (T,)
    True where step t's action was exploratory (only t >= 1 matter). bootstrap: the final state T has a value
    (truncated, not terminated). gamma: fixed discount, or None for the dynamic discount. watkins: False = one-step.
    Returns (T,) targets in the network's parametrisation (Q^ when dynamic).
    """
    steps = len(rewards)
    dynamic = gamma is None
    discount = 1.0 if dynamic else float(gamma)

    def bootstrap_value(k: int) -> float:
        # The value of state k in un-normalised units: V_k * max Q^(s_k) when dynamic.
        return float(values_left[k] * max_q[k]) if dynamic else float(max_q[k])

    returns = np.zeros(steps, dtype=np.float64)  # un-normalised Q(s_t, a_t) targets
    following = bootstrap_value(steps) if bootstrap else 0.0  # value after step T-1
    for t in range(steps - 1, -1, -1):
        returns[t] = rewards[t] + discount * following
        # What step t-1 sees after itself: bootstrap at t when t's action was exploratory (or one-step),
        # else the greedy segment continues through t.
        following = bootstrap_value(t) if (not watkins or cut[t]) else returns[t]
    if dynamic:
        return returns / values_left[:steps]
    return returns


def returns_to_go(rewards: np.ndarray, gamma: float) -> np.ndarray:
    """(T,) G_t = sum_{j >= t} gamma^(j-t) r_j."""
    out = np.zeros(len(rewards), dtype=np.float64)
    running = 0.0
    for t in range(len(rewards) - 1, -1, -1):
        running = rewards[t] + gamma * running
        out[t] = running
    return out


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1)


def q_loss(choice_q: torch.Tensor, choices: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """0.5 * mean squared TD error of the chosen actions. choice_q (T, B, C); choices, targets, mask (T, B)."""
    chosen = choice_q.gather(-1, choices.unsqueeze(-1)).squeeze(-1)
    return 0.5 * masked_mean((chosen - targets) ** 2, mask)


def q_penalty(choice_q: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """LSAE's penalty pulling sum_a Q^(s, a) towards 1 (Q^ is a fraction of the remaining reward)."""
    return masked_mean((choice_q.sum(-1) - 1.0) ** 2, mask)


def symbol_loss(symbol_logits: torch.Tensor, labels: torch.Tensor, write_mask: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the symbol head on the symbols that were due, at the steps that wrote (LSAE)."""
    nll = F.cross_entropy(symbol_logits.flatten(0, 1), labels.clamp(min=0).flatten(), reduction="none")
    return masked_mean(nll.view_as(labels), write_mask)


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
