"""``npo``: Negative Preference Optimization (Zhang, Lin, Bai, Mei 2024, arXiv:2404.05868).

Forget term: -(2/beta) * log sigmoid(-beta * (log p_theta(y|x) - log p_ref(y|x))), with summed
answer-token log-probs, averaged over examples. It is bounded below (by 0) and its gradient
vanishes as the model's likelihood falls under the reference's, which is what keeps NPO from
gradient ascent's collapse. Retain term: NLL (NPO+RT) or KL to the reference (NPO-KL).
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


def npo_loss(policy_logp: torch.Tensor, ref_logp: torch.Tensor, beta: float) -> torch.Tensor:
    """Per-example NPO loss: -(2/beta) * log sigmoid(-beta * (policy_logp - ref_logp)).

    Args: policy_logp, ref_logp: summed answer log-probs [B] under the model and the reference.
    """
    return -(2.0 / beta) * F.logsigmoid(-beta * (policy_logp - ref_logp))


@dataclass
class NPOConfig(MethodConfig):
    """NPO defaults from the paper / open-unlearning: beta 0.1, alpha 1, gamma 1, retain NLL."""

    name: str = "npo"
    beta: float = 0.1
    retain_loss: Literal["nll", "kl"] = "nll"
    reference: Literal["cached", "online"] = "cached"

    def check(self) -> None:
        """beta must be positive."""
        super().check()
        require(self.beta > 0, "beta", f"must be > 0, got {self.beta}")


class NPO(Method):
    """loss = gamma * mean(npo_loss) + alpha * retain term."""

    streams = (Stream("forget", "forget"), Stream("retain", "retain"))

    def __init__(self, config: NPOConfig):
        self.config = config
        self.cached_reference = ("forget",) if config.reference == "cached" else ()
        self.needs_reference_model = config.reference == "online" or config.retain_loss == "kl"

    def compute(self, ctx: StepContext) -> LossOutput:
        """NPO forget term from summed log-probs plus the retain term."""
        policy = ctx.logprobs("forget").sum
        forget = npo_loss(policy, ctx.reference_logprobs("forget"), self.config.beta).mean()
        retain = retain_term(ctx, self.config.retain_loss, self.config.nll_reduction)
        loss = self.config.gamma * forget + self.config.alpha * retain
        return LossOutput(
            loss, {"forget_loss": mean_item(forget), "retain_loss": mean_item(retain)}
        )
