"""RL learners: each is a `Learner` (rl_tasks.learners.base) that states its behaviour policy and its loss; the
trainer asks it and never branches on the agent's name.

Adding a learner: one file here with a `Learner` subclass, and one line in `LEARNERS`. Entries are imported when
used, so validating a config never imports torch.
"""

from __future__ import annotations

from typing import Any

from seedcore.registry import load_object

LEARNERS = {
    "qlearning": "rl_tasks.learners.qlearning:QLearning",
    "reinforce": "rl_tasks.learners.reinforce:Reinforce",
}
"""`--agent` name -> its learner class."""


def build_learner(cfg: Any, device: Any) -> Any:
    """The learner of `cfg.agent` for this run."""
    return load_object(LEARNERS[cfg.agent])(cfg, device)
