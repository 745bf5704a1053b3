"""``ga`` (gradient ascent) and ``graddiff`` (gradient difference).

Every NLL (forget and retain) is averaged per ``method.nll_reduction``: "example" (default: mean
of per-example means) or "token" (the global batch's token mean, open-unlearning's HF loss).

GA: minimize -NLL on the forget set (Jang et al. 2023, "Knowledge Unlearning for Mitigating
Privacy Risks in Language Models"). GradDiff: GA plus NLL (or KL) on the retain set (Liu et al.
2022; TOFU's "Grad. Diff."). Unbounded: the forget term goes to -inf, which is why utility
collapses (the motivation for NPO).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from unlearn.methods.common import (
    LossOutput,
    Method,
    MethodConfig,
    StepContext,
    Stream,
    mean_item,
    nll_term,
    retain_term,
)


@dataclass
class GAConfig(MethodConfig):
    """Gradient ascent: loss = -gamma * NLL(forget)."""

    name: str = "ga"


@dataclass
class GradDiffConfig(MethodConfig):
    """GradDiff: loss = -gamma * NLL(forget) + alpha * retain term."""

    name: str = "graddiff"
    retain_loss: Literal["nll", "kl"] = "nll"


class GradientAscent(Method):
    """loss = gamma * (-NLL_forget)."""

    streams = (Stream("forget", "forget"),)

    def __init__(self, config: GAConfig):
        self.config = config

    def compute(self, ctx: StepContext) -> LossOutput:
        """Negated forget NLL."""
        forget = -nll_term(ctx, "forget", self.config.nll_reduction)
        return LossOutput(self.config.gamma * forget, {"forget_loss": mean_item(forget)})


class GradDiff(Method):
    """loss = gamma * (-NLL_forget) + alpha * retain term."""

    streams = (Stream("forget", "forget"), Stream("retain", "retain"))

    def __init__(self, config: GradDiffConfig):
        self.config = config
        self.needs_reference_model = config.retain_loss == "kl"

    def compute(self, ctx: StepContext) -> LossOutput:
        """Negated forget NLL plus the retain term."""
        reduction = self.config.nll_reduction
        forget = -nll_term(ctx, "forget", reduction)
        retain = retain_term(ctx, self.config.retain_loss, reduction)
        loss = self.config.gamma * forget + self.config.alpha * retain
        return LossOutput(
            loss, {"forget_loss": mean_item(forget), "retain_loss": mean_item(retain)}
        )
