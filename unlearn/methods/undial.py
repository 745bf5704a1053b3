"""``undial``: UNDIAL, self-distillation with adjusted logits (Dong et al. 2024, "UNDIAL:
Self-Distillation with Adjusted Logits for Robust Unlearning in Large Language Models",
arXiv:2402.10052).

Forget term, at every answer position t (y_t the answer token, z_ref the frozen reference's
logits, z the trained model's):

    q_t = softmax(z_ref,t - beta * onehot(y_t))          (the teacher, its answer token demoted)
    L_t = CE(q_t, softmax(z_t)) = -sum_v q_t,v log p_t,v

averaged over answer tokens per ``nll_reduction``. Unlike gradient ascent the target is a fixed,
bounded distribution, so the loss cannot run away. Retain term: NLL (or KL) weighted by alpha,
which open-unlearning sets to 0 by default. open-unlearning's defaults: beta 10, alpha 0, gamma 1
(training: lr 1e-4, 10 epochs, batch 2 x accumulation 8).

Differences from open-unlearning's ``compute_undial_loss``, which averages over all B x T
positions: there the prompt and padding positions (label -100) also count, each distilled toward
the teacher with the logit of token V-100 demoted (``-100`` indexes the vocabulary from its end).
Here only answer positions count, as the paper defines the loss.
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
    answer_mean,
    mean_item,
    retain_term,
)
from unlearn.models.batching import answer_positions


def undial_token_loss(
    logits: torch.Tensor, ref_logits: torch.Tensor, labels: torch.Tensor, beta: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-position UNDIAL loss [B, T-1] (0 off the answer) and the answer mask [B, T-1].

    L_t = -sum_v softmax(z_ref,t - beta * onehot(y_t))_v * log_softmax(z_t)_v at positions t that
    predict an answer token. Args: ``logits`` / ``ref_logits`` [B, T, V], ``labels`` [B, T].
    """
    sel, targets, mask = answer_positions(logits, labels)
    ref_sel = ref_logits[:, :-1][mask].float()
    adjusted = ref_sel.scatter_add(
        -1, targets.unsqueeze(-1), torch.full_like(ref_sel[:, :1], -beta)
    )
    teacher = F.softmax(adjusted, dim=-1)
    per = -(teacher * F.log_softmax(sel.float(), dim=-1)).sum(-1)
    out = torch.zeros(mask.shape, dtype=per.dtype, device=per.device)
    return out.masked_scatter(mask, per), mask


@dataclass
class UNDIALConfig(MethodConfig):
    """UNDIAL defaults from open-unlearning: beta 10 (how far the answer token is demoted), alpha 0."""

    name: str = "undial"
    beta: float = 10.0
    alpha: float = 0.0
    retain_loss: Literal["nll", "kl"] = "nll"

    def check(self) -> None:
        """beta must be positive."""
        super().check()
        require(self.beta > 0, "beta", f"must be > 0, got {self.beta}")


class UNDIAL(Method):
    """loss = gamma * mean_t CE(softmax(z_ref - beta e_y), softmax(z)) + alpha * retain term."""

    needs_reference_model = True  # the teacher's logits on the forget answers, every step

    def __init__(self, config: UNDIALConfig):
        self.config = config
        # with alpha 0 (the default) no retain rows are read or run
        retain = (Stream("retain", "retain"),) if config.alpha > 0 else ()
        self.streams = (Stream("forget", "forget"), *retain)

    def compute(self, ctx: StepContext) -> LossOutput:
        """Distill toward the reference with the answer token demoted, plus the retain term."""
        per, mask = undial_token_loss(
            ctx.logits("forget"),
            ctx.reference_logits("forget"),
            ctx.labels("forget"),
            self.config.beta,
        )
        forget = answer_mean(ctx, "forget", per, mask, self.config.nll_reduction)
        loss = self.config.gamma * forget
        terms = {"forget_loss": mean_item(forget)}
        if any(st.name == "retain" for st in self.streams):
            retain = retain_term(ctx, self.config.retain_loss, self.config.nll_reduction)
            loss = loss + self.config.alpha * retain
            terms["retain_loss"] = mean_item(retain)
        return LossOutput(loss, terms)
