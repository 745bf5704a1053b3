"""``wga``: weighted gradient ascent (Wang et al. 2025, "Rethinking LLM Unlearning Objectives:
A Gradient Perspective and Go Beyond", ICLR 2025, arXiv:2502.19301).

Gradient ascent with each answer token's loss weighted by its own (detached) probability:

    forget term = -mean_t [ w_t * CE_t ],   CE_t = -log p(y_t | x, y_<t),   w_t = sg(p(y_t))^beta

so tokens the model already finds unlikely stop pushing (their weight goes to 0), which keeps
GA's unbounded descent from dominating. Averaged over answer tokens per ``nll_reduction``
("token" is open-unlearning's mean over the batch's answer tokens). Retain term: NLL or KL.
open-unlearning's defaults: beta 1, alpha 1, gamma 1 (training: lr 1e-5, 5 epochs).
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


def wga_token_loss(token_logp: torch.Tensor, beta: float) -> torch.Tensor:
    """Per-token WGA loss: -sg(p)^beta * CE = sg(exp(log p))^beta * log p ([B, T-1], any shape)."""
    weight = token_logp.detach().exp() ** beta
    return weight * token_logp


@dataclass
class WGAConfig(MethodConfig):
    """WGA defaults from open-unlearning: beta 1, alpha 1, gamma 1, retain NLL."""

    name: str = "wga"
    beta: float = 1.0
    retain_loss: Literal["nll", "kl"] = "nll"

    def check(self) -> None:
        """beta must be non-negative (0 is plain gradient ascent)."""
        super().check()
        require(self.beta >= 0, "beta", f"must be >= 0, got {self.beta}")


class WGA(Method):
    """loss = gamma * mean_t(sg(p_t)^beta log p_t) + alpha * retain term."""

    streams = (Stream("forget", "forget"), Stream("retain", "retain"))

    def __init__(self, config: WGAConfig):
        self.config = config
        self.needs_reference_model = config.retain_loss == "kl"

    def compute(self, ctx: StepContext) -> LossOutput:
        """Probability-weighted ascent on the forget answers plus the retain term."""
        lp = ctx.logprobs("forget")
        per = wga_token_loss(lp.token, self.config.beta)
        forget = answer_mean(ctx, "forget", per, lp.mask, self.config.nll_reduction)
        retain = retain_term(ctx, self.config.retain_loss, self.config.nll_reduction)
        loss = self.config.gamma * forget + self.config.alpha * retain
        return LossOutput(
            loss, {"forget_loss": mean_item(forget), "retain_loss": mean_item(retain)}
        )
