"""Q-learning (LSAE, from the official code's q_classic / q_watkins and their `_dynamic` variants):
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
"""

from __future__ import annotations

import numpy as np
import torch

from rl_tasks.learners.base import Learner, masked_mean

Q_PENALTY_GATE = 0.95
"""LSAE turns the Q penalty on once the (validation) accuracy reaches this."""


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


def q_loss(choice_q: torch.Tensor, choices: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """0.5 * mean squared TD error of the chosen actions. choice_q (T, B, C); choices, targets, mask (T, B)."""
    chosen = choice_q.gather(-1, choices.unsqueeze(-1)).squeeze(-1)
    return 0.5 * masked_mean((chosen - targets) ** 2, mask)


def q_penalty(choice_q: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """LSAE's penalty pulling sum_a Q^(s, a) towards 1 (Q^ is a fraction of the remaining reward)."""
    return masked_mean((choice_q.sum(-1) - 1.0) ** 2, mask)


def epsilon_at(cfg, episodes: int, greedy_accuracy: float) -> float:
    """The behaviour policy's exploration probability (see RLConfig.exploration)."""
    if cfg.exploration == "constant":
        return cfg.epsilon
    if cfg.exploration == "linear":
        fraction = min(1.0, episodes / cfg.epsilon_decay_episodes) if cfg.epsilon_decay_episodes else 1.0
        return cfg.epsilon + (cfg.epsilon_final - cfg.epsilon) * fraction
    # adaptive: explore as much as the greedy policy still fails, so a perfect policy's episodes stay perfect
    return max(cfg.epsilon_final, cfg.epsilon * (1.0 - greedy_accuracy))


class QLearning(Learner):
    """Epsilon-greedy behaviour; Watkins Q(lambda) or one-step targets, dynamic or fixed discount (LSAE)."""

    epsilon = 0.0

    def start_episode(self, episodes: int, greedy_accuracy: float) -> None:
        self.epsilon = epsilon_at(self.cfg, episodes, greedy_accuracy)

    def choose(self, scores: torch.Tensor, greedy: int, rng: np.random.Generator) -> int:
        return int(rng.integers(len(scores))) if rng.random() < self.epsilon else greedy

    def loss(self, out, batch, episodes, greedy_accuracy):
        cfg, mask = self.cfg, batch["mask"]
        best = out.choice.detach().max(-1)
        max_q = best.values.double().cpu().numpy()  # (T+1, B)
        # Watkins cuts where the recorded action is not greedy under the current weights (on fresh episodes,
        # exactly the behaviour policy's exploratory steps).
        not_greedy = (best.indices[:-1] != batch["choices"]).cpu().numpy()  # (T, B)
        targets = np.zeros(mask.shape, dtype=np.float64)
        for b, e in enumerate(episodes):
            n = len(e.rewards)
            targets[:n, b] = q_targets(
                np.asarray(e.rewards),
                np.asarray(e.values_left, dtype=np.float64),
                max_q[: n + 1, b],
                not_greedy[:n, b],
                bootstrap=not e.terminated,
                gamma=cfg.gamma,
                watkins=cfg.q_target == "watkins",
            )
        target_t = torch.from_numpy(targets).to(out.choice.dtype).to(self.device)
        loss = q_loss(out.choice[:-1], batch["choices"], target_t, mask)
        parts = {"train/q_loss": float(loss.detach())}
        if cfg.q_penalty > 0 and greedy_accuracy >= Q_PENALTY_GATE:
            loss = loss + cfg.q_penalty * q_penalty(out.choice[:-1], mask)
        return loss, parts

    def metrics(self, episodes: int, greedy_accuracy: float) -> dict[str, float]:
        return {"train/epsilon": epsilon_at(self.cfg, episodes, greedy_accuracy)}
