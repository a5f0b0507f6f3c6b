"""The controller: an RNN (GRU or LSTM; feed-forward as the memoryless baseline) that reads the symbol under the
head and its own previous action, and scores the next action. Only the model: no env, no I/O.

Action parametrisations (`output_mode`):
- joint (fully RL): one choice among moves x (no write, write symbol 0..base-1); the symbol is part of the action.
- split (LSAE): one choice among moves x (no write, write); the symbol comes from a separate head learned
  supervised (cross-entropy on the symbol that was due), as in Zaremba et al. 2016.
The choice head gives Q values (Q-learning) or logits (REINFORCE); REINFORCE adds a value head (its baseline).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

CORES = ("gru", "lstm", "ff")
OUTPUT_MODES = ("joint", "split")


@dataclass(frozen=True)
class ActionCodec:
    """Maps an env action (move, write, symbol) to the controller's choice index and back."""

    moves: int
    base: int
    split: bool

    @property
    def n_choices(self) -> int:
        return self.moves * (2 if self.split else self.base + 1)

    @property
    def n_prev(self) -> int:
        """Previous-action vocabulary: every (move, no write | write s) plus a start token."""
        return self.moves * (self.base + 1) + 1

    @property
    def start_token(self) -> int:
        return self.n_prev - 1

    def decode(self, choice: int, symbol: int) -> tuple[int, int, int]:
        """Env action of a choice; `symbol` (the symbol head's pick) is used by split choices that write."""
        if self.split:
            move, write = divmod(choice, 2)
            return (move, write, symbol if write else 0)
        move, rest = divmod(choice, self.base + 1)
        return (move, int(rest > 0), rest - 1 if rest > 0 else 0)

    def encode_prev(self, action: tuple[int, int, int]) -> int:
        move, write, symbol = action
        return move * (self.base + 1) + (symbol + 1 if write else 0)


@dataclass(frozen=True)
class ControllerConfig:
    n_obs: int
    """Observation symbols (digits, blank, markers)."""
    codec: ActionCodec
    core: str = "gru"
    hidden: int = 128
    value_head: bool = False


@dataclass
class ControllerOutput:
    choice: torch.Tensor
    """(T, B, n_choices): Q values or logits over choices."""
    symbol: torch.Tensor | None
    """(T, B, base): symbol logits (split mode), else None."""
    value: torch.Tensor | None
    """(T, B): baseline (REINFORCE), else None."""


class Controller(nn.Module):
    def __init__(self, cfg: ControllerConfig):
        super().__init__()
        if cfg.core not in CORES:
            raise ValueError(f"core is {cfg.core!r}; use one of {', '.join(CORES)}.")
        self.cfg = cfg
        hidden = cfg.hidden
        # Sum of two embeddings = a linear layer on the concatenated one-hots of symbol and previous action.
        self.obs_embed = nn.Embedding(cfg.n_obs, hidden)
        self.prev_embed = nn.Embedding(cfg.codec.n_prev, hidden)
        if cfg.core == "gru":
            self.core = nn.GRU(hidden, hidden)
        elif cfg.core == "lstm":
            self.core = nn.LSTM(hidden, hidden)
        else:
            self.core = nn.Sequential(nn.Linear(hidden, hidden), nn.Tanh())
        self.choice_head = nn.Linear(hidden, cfg.codec.n_choices)
        self.symbol_head = nn.Linear(hidden, cfg.codec.base) if cfg.codec.split else None
        self.value_head = nn.Linear(hidden, 1) if cfg.value_head else None

    def initial_state(self, batch: int) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None:
        device = self.obs_embed.weight.device
        if self.cfg.core == "gru":
            return torch.zeros(1, batch, self.cfg.hidden, device=device)
        if self.cfg.core == "lstm":
            zeros = torch.zeros(1, batch, self.cfg.hidden, device=device)
            return (zeros, zeros.clone())
        return None

    def forward(self, obs: torch.Tensor, prev: torch.Tensor, state=None) -> tuple[ControllerOutput, object]:
        """obs, prev: (T, B) int64. Returns the heads' outputs and the core's final state (None for ff)."""
        x = torch.tanh(self.obs_embed(obs) + self.prev_embed(prev))  # (T, B, H)
        if self.cfg.core == "ff":
            h, state = self.core(x), None
        else:
            if state is None:
                state = self.initial_state(obs.shape[1])
            h, state = self.core(x, state)  # (T, B, H)
        out = ControllerOutput(
            choice=self.choice_head(h),
            symbol=self.symbol_head(h) if self.symbol_head is not None else None,
            value=self.value_head(h).squeeze(-1) if self.value_head is not None else None,
        )
        return out, state

    def step(self, obs: torch.Tensor, prev: torch.Tensor, state=None) -> tuple[ControllerOutput, object]:
        """One time step for acting: obs, prev (B,) int64; state as returned by the previous step (None at the
        start). The same maths as forward() through the fused cell kernels, about twice as fast at B = 1; its
        outputs have no time axis: choice (B, C), symbol (B, base), value (B,)."""
        x = torch.tanh(self.obs_embed.weight[obs] + self.prev_embed.weight[prev])  # (B, H)
        core = self.core
        if self.cfg.core == "gru":
            h = x.new_zeros(x.shape) if state is None else state
            h = state = torch.gru_cell(x, h, core.weight_ih_l0, core.weight_hh_l0, core.bias_ih_l0, core.bias_hh_l0)
        elif self.cfg.core == "lstm":
            hc = (x.new_zeros(x.shape), x.new_zeros(x.shape)) if state is None else state
            state = torch.lstm_cell(x, hc, core.weight_ih_l0, core.weight_hh_l0, core.bias_ih_l0, core.bias_hh_l0)
            h = state[0]
        else:
            h, state = core(x), None
        out = ControllerOutput(
            choice=F.linear(h, self.choice_head.weight, self.choice_head.bias),
            symbol=self.symbol_head(h) if self.symbol_head is not None else None,
            value=self.value_head(h).squeeze(-1) if self.value_head is not None else None,
        )
        return out, state
