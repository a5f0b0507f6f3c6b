"""F17: Freivalds & Liepins 2017, "Improving the Neural GPU Architecture for Algorithm Learning" (arXiv
1702.08727): one shared weight set, hard nonlinearities whose saturation cost joins the loss with an adapted
weight, AdaMax with lr 0.01 * 48 / width."""

from __future__ import annotations

from neuralgpu.variants import ModelVariant


class F17(ModelVariant):
    module = "neuralgpu.model:ImprovedNeuralGPU"
    recipe = {
        "relax_copies": 1,
        "dropout": 0.1,
        "curriculum": "bins",
        "optimizer": "adamax",
        "lr": lambda cfg: 0.01 * 48 / cfg.width,
        "lr_decay": 0.7,
    }

    def check(self, cfg, need) -> None:
        need(
            cfg.relax_copies == 1,
            "relax_copies",
            f"is {cfg.relax_copies} with model f17",
            "F17 shares one weight set: leave relax_copies unset or 1",
        )

    def initial_aux_weight(self, cfg) -> float:
        return cfg.saturation_weight_max  # F17 starts at its cap, 1e-3

    def auxiliary_loss(self, model, loss):
        return model.saturation_cost

    def adapt_aux_weight(self, cfg, weight: float, window_loss: float, window_aux: float, lr: float) -> float:
        # F17: re-set the weight so the weighted saturation cost is about lr x the loss, capped.
        return min(max(window_loss / window_aux * lr, 1e-20), cfg.saturation_weight_max)
