"""``ssd``: Selective Synaptic Dampening (Foster, Schoepf, Brintrup 2024, "Fast Machine Unlearning
Without Retraining Through Selective Synaptic Dampening", AAAI; evaluated for corrective unlearning
by Goel et al. 2024).

One shot, no training loop. Importances are diagonal Fisher estimates, the mean over batches of
the squared gradient of the NLL: I_D on the full training data (retain + forget) and I_f on the
forget data. Where I_f > alpha * I_D, the parameter is scaled by beta = min(lambda * I_D / I_f, 1);
elsewhere it is left alone. Defaults alpha 10, lambda 1.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch

from unlearn.config import require
from unlearn.methods.common import Method, MethodConfig, OneShotContext, Stream


def ssd_dampen(
    param: torch.Tensor, imp_full: torch.Tensor, imp_forget: torch.Tensor, alpha: float, lam: float
) -> tuple[torch.Tensor, int]:
    """Return (dampened parameter, number of entries dampened).

    theta' = theta * min(lam * I_D / I_f, 1) where I_f > alpha * I_D; theta elsewhere.
    """
    selected = imp_forget > alpha * imp_full
    scale = (lam * imp_full / imp_forget.clamp(min=torch.finfo(imp_forget.dtype).tiny)).clamp(
        max=1.0
    )
    out = torch.where(selected, param * scale.to(param.dtype), param)
    return out, int(selected.sum())


@dataclass
class SSDConfig(MethodConfig):
    """SSD parameters: the selection ratio alpha (``ssd_alpha``) and dampening strength lambda."""

    name: str = "ssd"
    ssd_alpha: float = 10.0
    ssd_lambda: float = 1.0

    def check(self) -> None:
        """Both must be positive."""
        super().check()
        require(
            self.nll_reduction == "example",
            "nll_reduction",
            "SSD's importances are mean squared gradients per batch; only 'example' applies",
        )
        require(self.ssd_alpha > 0, "ssd_alpha", f"must be > 0, got {self.ssd_alpha}")
        require(self.ssd_lambda > 0, "ssd_lambda", f"must be > 0, got {self.ssd_lambda}")


class SSD(Method):
    """One-shot dampening of forget-specific parameters; ``apply`` replaces the training loop."""

    streams = (Stream("forget", "forget"), Stream("retain", "retain"))
    one_shot = True

    def __init__(self, config: SSDConfig):
        self.config = config

    @staticmethod
    def importance(
        model: torch.nn.Module,
        batches: Iterable[Any],
        loss_fn: Callable[[torch.nn.Module, Any], torch.Tensor],
        all_reduce: Callable[[torch.Tensor], torch.Tensor],
    ) -> dict[str, torch.Tensor]:
        """Diagonal Fisher: mean over batches (all workers) of grad(NLL)^2 per parameter."""
        params = {n: p for n, p in model.named_parameters() if p.requires_grad}
        imp = {n: torch.zeros_like(p, dtype=torch.float32) for n, p in params.items()}
        count = torch.zeros((), dtype=torch.float64)
        for batch in batches:
            model.zero_grad(set_to_none=True)
            loss_fn(model, batch).backward()
            for n, p in params.items():
                if p.grad is not None:
                    imp[n] += p.grad.detach().float() ** 2
            count += 1
        model.zero_grad(set_to_none=True)
        total = all_reduce(count)
        return {n: all_reduce(v) / total.float() for n, v in imp.items()}

    def apply(self, ctx: OneShotContext) -> dict[str, float]:
        """Both importances (I_D over retain + forget batches, I_f over forget batches), then
        dampen ``ctx.model`` in place; returns summary numbers."""
        model = ctx.model
        forget = ctx.batches("forget")
        imp_full = self.importance(model, ctx.batches("retain") + forget, ctx.nll, ctx.all_reduce)
        imp_forget = self.importance(model, forget, ctx.nll, ctx.all_reduce)
        dampened = total = 0
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name not in imp_full:
                    continue
                new, n = ssd_dampen(
                    p,
                    imp_full[name],
                    imp_forget[name],
                    self.config.ssd_alpha,
                    self.config.ssd_lambda,
                )
                p.copy_(new)
                dampened += n
                total += p.numel()
        return {"dampened_params": float(dampened), "dampened_fraction": dampened / max(total, 1)}
