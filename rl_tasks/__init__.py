"""Algorithmic RL environments (Gymnasium) and RNN agents.

Importing the package registers the environments as `rl_tasks/<Name>-v0`: G19's Copy, DuplicatedInput,
RepeatCopy, Reverse, ReversedAddition, ReversedAddition3 and LSAE's grids Addition, Addition3,
SingleDigitMultiplication, Walk. It imports gymnasium and numpy, not torch.
"""

from rl_tasks.envs import ENV_SPECS, register_envs

ENV_NAMES = tuple(ENV_SPECS)

register_envs()

__all__ = ["ENV_NAMES", "register_envs"]
