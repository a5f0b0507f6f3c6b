"""K15/P16: Kaiser & Sutskever 2015 (arXiv 1511.08228) as extended by Price et al. 2016 (arXiv 1611.00736)."""

from __future__ import annotations

from neuralgpu.variants import ModelVariant
from seedcore.config import quote


class K15(ModelVariant):
    module = "neuralgpu.model:NeuralGPU"
    recipe = {
        "width": 24,
        "relax_copies": 6,
        "dropout": 0.15,
        "curriculum": "length",
        "optimizer": "adam",
        "lr": 1e-3,
        "lr_decay": 0.98,
        "lr_decay_rule": "k15",
        "init": "torch",
        "clip_norm": 1.0,
    }

    def check(self, cfg, need) -> None:
        need(
            cfg.init == "torch",
            "init",
            f"is {quote(cfg.init)} with model k15",
            "F17's initialisation is for model f17; leave init unset or torch (K15's unit scaling)",
        )

    def dropout_rate(self, cfg, length: int) -> float:
        """P16: keep = 1 - dropout * 8 / length, so short examples get more (capped below 1)."""
        return min(cfg.dropout * 8.0 / length, 0.9)
