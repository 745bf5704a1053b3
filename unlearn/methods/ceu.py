"""``ceu``: cross-entropy unlearning (Yang 2025, "CE-U: Cross Entropy Unlearning",
arXiv:2503.01224).

At every answer position t the target is the model's own (detached) next-token distribution with
the answer token removed, and the loss is the cross entropy toward it:

    q_t = softmax(sg(z_t) with z_t,y_t = -inf)
    L_t = CE(q_t, softmax(z_t)) = -sum_{v != y_t} q_t,v log p_t,v

Its gradient is p_t - q_t: the answer token's probability is pushed to 0 and the mass goes to the
alternatives in proportion to what the model already believes, a bounded objective (unlike
gradient ascent's). As in the paper's training settings (and open-unlearning), the first
``ignore_first_n_answer_tokens`` (default 1) tokens of each answer are not unlearned. Averaged per
``nll_reduction`` over the remaining answer tokens. Forget term only, as in open-unlearning (which
sets no other hyperparameter).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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
)
from unlearn.models.batching import answer_positions
from unlearn.models.prompting import IGNORE_INDEX


def skip_first_answer_tokens(mask: torch.Tensor, n: int) -> torch.Tensor:
    """``mask`` [B, T-1] of answer positions without each row's first ``n`` of them."""
    return mask & (mask.long().cumsum(-1) > n)


def ceu_token_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-position CE-U loss [B, T-1] (0 off the answer) and the answer mask [B, T-1].

    L_t = -sum_v q_v log softmax(z_t)_v with q = softmax(sg(z_t)), the answer token's logit set
    to -inf. Args: ``logits`` [B, T, V], ``labels`` [B, T].
    """
    sel, targets, mask = answer_positions(logits, labels)
    z = sel.float()
    target_logits = z.detach().scatter(-1, targets.unsqueeze(-1), float("-inf"))
    q = F.softmax(target_logits, dim=-1)
    per = -(q * F.log_softmax(z, dim=-1)).sum(-1)
    out = torch.zeros(mask.shape, dtype=per.dtype, device=per.device)
    return out.masked_scatter(mask, per), mask


@dataclass
class CEUConfig(MethodConfig):
    """CE-U defaults from open-unlearning: the first answer token is not unlearned."""

    name: str = "ceu"
    ignore_first_n_answer_tokens: int = 1

    def check(self) -> None:
        """The number of skipped tokens is non-negative."""
        super().check()
        require(
            self.ignore_first_n_answer_tokens >= 0,
            "ignore_first_n_answer_tokens",
            f"must be >= 0, got {self.ignore_first_n_answer_tokens}",
        )


class CEU(Method):
    """loss = gamma * mean over answer tokens (but the first n) of CE(q_t, p_t)."""

    streams = (Stream("forget", "forget"),)

    def __init__(self, config: CEUConfig):
        self.config = config

    def token_count(self, stream: str, labels: Sequence[int]) -> int:
        """The answer tokens this loss averages over: all but each answer's first n."""
        n = sum(1 for y in labels[1:] if y != IGNORE_INDEX)
        return max(0, n - self.config.ignore_first_n_answer_tokens)

    def compute(self, ctx: StepContext) -> LossOutput:
        """Cross entropy toward the model's own distribution without the answer token."""
        per, mask = ceu_token_loss(ctx.logits("forget"), ctx.labels("forget"))
        mask = skip_first_answer_tokens(mask, self.config.ignore_first_n_answer_tokens)
        forget = answer_mean(ctx, "forget", per, mask, self.config.nll_reduction)
        return LossOutput(self.config.gamma * forget, {"forget_loss": mean_item(forget)})
