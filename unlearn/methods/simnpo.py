"""``simnpo``: Simple NPO (Fan et al. 2024, "Simplicity Prevails: Rethinking Negative Preference
Optimization for LLM Unlearning", arXiv:2410.07163).

Reference-free and length-normalized. Forget term, as open-unlearning and the SimNPO authors'
code compute it (and as this file does):

    -(2/beta) * log sigmoid(beta * (NLL_s/|y| - delta))

with NLL_s/|y| the per-example mean answer-token NLL. The paper writes the margin outside the
product, -(2/beta) * log sigmoid(-(beta/|y|) * log p(y|x) - gamma), which is the same loss with
its margin gamma = beta * delta: a config from open-unlearning (delta) carries over unchanged; a
margin taken from the paper (gamma) is entered here as delta = gamma / beta.
Defaults (open-unlearning, TOFU forget10): beta 4.5, gamma 0.125 (the forget term's weight, not the
paper's margin), delta 0, alpha 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from unlearn.config import require
from unlearn.methods.common import (
    LossOutput,
    Method,
    MethodConfig,
    StepContext,
    Stream,
    mean_item,
    retain_term,
)


def simnpo_loss(mean_logp: torch.Tensor, beta: float, delta: float) -> torch.Tensor:
    """Per-example SimNPO loss: -(2/beta) * log sigmoid(beta * (-mean_logp - delta)).

    open-unlearning's form (margin delta inside the product; the paper's gamma = beta * delta).
    Args: mean_logp: per-example mean answer-token log-prob [B] (= -NLL_s / |y|).
    """
    return -(2.0 / beta) * F.logsigmoid(beta * (-mean_logp - delta))


@dataclass
class SimNPOConfig(MethodConfig):
    """SimNPO defaults from open-unlearning's TOFU forget10 setting."""

    name: str = "simnpo"
    beta: float = 4.5
    gamma: float = 0.125
    delta: float = 0.0
    retain_loss: Literal["nll", "kl"] = "nll"

    def check(self) -> None:
        """beta must be positive."""
        super().check()
        require(self.beta > 0, "beta", f"must be > 0, got {self.beta}")


class SimNPO(Method):
    """loss = gamma * mean(simnpo_loss) + alpha * retain term."""

    streams = (Stream("forget", "forget"), Stream("retain", "retain"))

    def __init__(self, config: SimNPOConfig):
        self.config = config
        self.needs_reference_model = config.retain_loss == "kl"

    def compute(self, ctx: StepContext) -> LossOutput:
        """Length-normalized, reference-free NPO plus the retain term."""
        forget = simnpo_loss(
            ctx.logprobs("forget").mean, self.config.beta, self.config.delta
        ).mean()
        retain = retain_term(ctx, self.config.retain_loss, self.config.nll_reduction)
        loss = self.config.gamma * forget + self.config.alpha * retain
        return LossOutput(
            loss, {"forget_loss": mean_item(forget), "retain_loss": mean_item(retain)}
        )
