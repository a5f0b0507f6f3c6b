"""Neural GPU variants: each states its recipe (defaults of the config fields left None: optimizer, learning rate,
dropout, curriculum, relaxation), its dropout rule, its config constraints and its auxiliary loss. The trainer
asks the variant and never branches on the model's name.

Adding a variant: one file here with a `ModelVariant` subclass, and one line in `VARIANTS`. Variant files import
torch only inside methods, so validating a config never imports it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from seedcore.config import Need
from seedcore.registry import load_object

if TYPE_CHECKING:
    import torch

    from neuralgpu.config import TrainConfig
    from neuralgpu.model import ModelConfig

VARIANTS = {
    "k15": "neuralgpu.variants.k15:K15",
    "f17": "neuralgpu.variants.f17:F17",
}
"""`--model` name -> its variant class."""


class ModelVariant:
    """The defaults below are a variant without extras: no auxiliary loss, dropout at the configured rate."""

    module: str = ""
    """`module:Class` of the nn.Module, built from a ModelConfig."""
    recipe: dict[str, Any] = {}
    """Config field -> value used when the field is None; a callable value gets the config."""

    def check(self, cfg: TrainConfig, need: Need) -> None:
        """Config rules of this variant (`need(ok, key, problem, fix)`)."""

    def build(self, model_cfg: ModelConfig) -> torch.nn.Module:
        return load_object(self.module)(model_cfg)

    def initialise(self, model: torch.nn.Module, cfg: TrainConfig) -> None:
        """Re-draw the weights of a model just built, as `cfg.init` says (under the init seed; "torch" keeps the
        modules' own initialisation and draws nothing)."""

    def dropout_rate(self, cfg: TrainConfig, length: int) -> float:
        return cfg.dropout

    def initial_aux_weight(self, cfg: TrainConfig) -> float:
        """Weight of the auxiliary loss at step 0 (logged as train/saturation_weight)."""
        return 0.0

    def auxiliary_loss(self, model: torch.nn.Module, loss: torch.Tensor) -> torch.Tensor:
        """The auxiliary loss of the forward pass just made (a scalar; zero when the variant has none)."""
        return loss.new_zeros(())

    def adapt_aux_weight(self, cfg: TrainConfig, weight: float, window_loss: float, window_aux: float, lr: float):
        """The auxiliary weight after a check window with these mean loss and auxiliary loss (> 0)."""
        return weight


def variant(name: str) -> ModelVariant:
    """The variant registered as `name` (a KeyError for an unknown name; configs report it first)."""
    return load_object(VARIANTS[name])()
