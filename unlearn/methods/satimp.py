"""``satimp``: saturation-importance reweighted gradient ascent (Yang et al. 2025,
"Exploring Criteria of Loss Reweighting to Enhance LLM Unlearning", ICML 2025, arXiv:2505.11953).

Gradient ascent with each answer token weighted by saturation (the token is still likely:
p^beta1) times importance (it still matters: (1 - p)^beta2), both detached:

    forget term = -mean_t [ sg(p_t)^beta1 * sg(1 - p_t)^beta2 * CE_t ],   CE_t = -log p_t

averaged over answer tokens per ``nll_reduction`` ("token" is open-unlearning's mean over the
batch's answer tokens). Retain term: NLL or KL. open-unlearning's defaults: beta1 5, beta2 1,
gamma 0.1, alpha 1 (training: lr 1e-5, 5 epochs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from unlearn.config import require
from unlearn.methods.common import (
    LossOutput,
    Method,
    MethodConfig,
    StepContext,
    Stream,
    answer_mean,
    mean_item,
    retain_term,
)


def satimp_token_loss(token_logp: torch.Tensor, beta1: float, beta2: float) -> torch.Tensor:
    """Per-token SatImp loss: -sg(p)^beta1 sg(1-p)^beta2 CE = w * log p (any shape)."""
    p = token_logp.detach().exp()
    return (p**beta1) * ((1.0 - p) ** beta2) * token_logp


@dataclass
class SatImpConfig(MethodConfig):
    """SatImp defaults from open-unlearning: beta1 5, beta2 1, gamma 0.1, alpha 1, retain NLL."""

    name: str = "satimp"
    beta1: float = 5.0
    beta2: float = 1.0
    gamma: float = 0.1
    retain_loss: Literal["nll", "kl"] = "nll"

    def check(self) -> None:
        """Both exponents must be non-negative."""
        super().check()
        require(self.beta1 >= 0, "beta1", f"must be >= 0, got {self.beta1}")
        require(self.beta2 >= 0, "beta2", f"must be >= 0, got {self.beta2}")


class SatImp(Method):
    """loss = gamma * mean_t(sg(p)^beta1 sg(1-p)^beta2 log p) + alpha * retain term."""

    streams = (Stream("forget", "forget"), Stream("retain", "retain"))

    def __init__(self, config: SatImpConfig):
        self.config = config
        self.needs_reference_model = config.retain_loss == "kl"

    def compute(self, ctx: StepContext) -> LossOutput:
        """Saturation x importance weighted ascent on the forget answers plus the retain term."""
        lp = ctx.logprobs("forget")
        per = satimp_token_loss(lp.token, self.config.beta1, self.config.beta2)
        forget = answer_mean(ctx, "forget", per, lp.mask, self.config.nll_reduction)
        retain = retain_term(ctx, self.config.retain_loss, self.config.nll_reduction)
        loss = self.config.gamma * forget + self.config.alpha * retain
        return LossOutput(
            loss, {"forget_loss": mean_item(forget), "retain_loss": mean_item(retain)}
        )
