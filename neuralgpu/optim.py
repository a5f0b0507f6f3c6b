"""F17's AdaMax (Freivalds & Liepins 2017, arXiv 1702.08727; LUMII-Syslab/DNGPU `adamax.py`), written from its
update rule: AdaMax (Kingma & Ba 2014, arXiv 1412.6980, Algorithm 2) without bias correction of the first moment,
and with each gradient element clipped to its own history first.

Per element, with u the running max of |g| before this step (0 at the start):

    g <- clip(g, -(clip_multiplier * u + clip_epsilon), +(clip_multiplier * u + clip_epsilon))
    m <- beta1 * m + (1 - beta1) * g
    u <- max(beta2 * u, |g|)
    w <- w - lr * m / (u + eps)

The clip starts at clip_epsilon (1e-4) and can grow by at most x1.2 a step, so the first steps are small (F17's
warm-up); later a single spike moves its weight by at most about lr * 1.2 (F17's README counts the clip as part of
the method). torch.optim.Adamax divides the step by 1 - beta1^t and does not clip.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch


class AdamaxF17(torch.optim.Optimizer):
    """F17's AdaMax. Its state per parameter has torch.optim.Adamax's keys (step, exp_avg, exp_inf), so a
    checkpoint's optimiser state has the same shape under either."""

    def __init__(
        self,
        params: Iterable[torch.Tensor],
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        clip_multiplier: float = 1.2,
        clip_epsilon: float = 1e-4,
    ):
        defaults = dict(lr=lr, betas=betas, eps=eps, clip_multiplier=clip_multiplier, clip_epsilon=clip_epsilon)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float32)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_inf"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                exp_avg, exp_inf = state["exp_avg"], state["exp_inf"]
                state["step"] += 1
                bound = exp_inf * group["clip_multiplier"] + group["clip_epsilon"]  # from u before this step
                grad = torch.minimum(torch.maximum(p.grad, -bound), bound)
                exp_avg.mul_(beta1).add_(grad, alpha=1.0 - beta1)
                torch.maximum(exp_inf * beta2, grad.abs(), out=exp_inf)
                p.addcdiv_(exp_avg, exp_inf + group["eps"], value=-group["lr"])
        return loss
