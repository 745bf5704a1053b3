"""What every method shares: per-sequence log-probs, NLL and KL terms, and the method interface.

Losses are functions of tensors (log-probs, logits, hidden states), never of models, so each one is
unit-tested on hand-computable numbers. The engine runs the model; a method asks the engine's
``StepContext`` for the quantities it needs and combines them with its loss functions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
import torch.nn.functional as F

from unlearn.config import require
from unlearn.models.prompting import IGNORE_INDEX


@dataclass
class SeqLogProbs:
    """Answer-token log-probs of a batch: ``token`` [B, T] (0 where masked), ``sum`` [B], ``count`` [B]."""

    token: torch.Tensor
    mask: torch.Tensor
    sum: torch.Tensor
    count: torch.Tensor

    @property
    def mean(self) -> torch.Tensor:
        """Per-example mean answer-token log-prob [B] (-mean NLL)."""
        return self.sum / self.count.clamp(min=1)


def sequence_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> SeqLogProbs:
    """Log-probs of the label tokens under ``logits`` [B, T, V], labels [B, T] (IGNORE_INDEX masked).

    Position t predicts label t+1 (causal shift). The one shared function every loss and metric
    uses, so training and evaluation agree to the last token.
    """
    if logits.shape[:2] != labels.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} disagree")
    logits = logits[:, :-1].float()
    targets = labels[:, 1:]
    mask = targets != IGNORE_INDEX
    safe = targets.masked_fill(~mask, 0)
    token = torch.gather(F.log_softmax(logits, dim=-1), 2, safe.unsqueeze(-1)).squeeze(-1)
    token = token * mask
    return SeqLogProbs(token=token, mask=mask, sum=token.sum(-1), count=mask.sum(-1))


def nll_loss(logp: SeqLogProbs) -> torch.Tensor:
    """Mean over examples of each example's mean answer-token NLL: mean_i(-sum_t log p / |y_i|).

    Per-example averaging (rather than HF's token-mean over the whole batch) makes the value
    independent of how a global batch is split into micro-batches and workers, so every backend
    computes the same loss.
    """
    return -(logp.mean).mean()


def kl_loss(logits: torch.Tensor, ref_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """KL(p_ref || p_theta) over the vocabulary at answer positions, averaged per example then over the batch.

    The retain regularizer of NPO-KL / GradDiff-KL (Zhang et al. 2024, "Negative Preference
    Optimization"; open-unlearning's ``compute_kl_divergence``).
    """
    mask = (labels[:, 1:] != IGNORE_INDEX).float()
    logp = F.log_softmax(logits[:, :-1].float(), dim=-1)
    ref_logp = F.log_softmax(ref_logits[:, :-1].float(), dim=-1)
    kl = (ref_logp.exp() * (ref_logp - logp)).sum(-1)  # [B, T]
    return ((kl * mask).sum(-1) / mask.sum(-1).clamp(min=1)).mean()


@dataclass
class LossOutput:
    """The loss to minimize and scalar terms to log (``forget_loss``, ``retain_loss``, ...)."""

    loss: torch.Tensor
    terms: dict[str, float] = field(default_factory=dict)


class StepContext(Protocol):
    """What the engine offers a method during one step (see ``unlearn.engine.context``)."""

    def logprobs(self, stream: str) -> SeqLogProbs:
        """The trained model's answer log-probs on a batch stream ("forget", "retain", "idk")."""

    def logits(self, stream: str) -> torch.Tensor:
        """The trained model's logits on a stream."""

    def hidden(self, stream: str, layer: int) -> torch.Tensor:
        """The trained model's output of decoder layer ``layer`` on a stream [B, T, H]."""

    def labels(self, stream: str) -> torch.Tensor:
        """The labels of a stream (IGNORE_INDEX on prompt and padding)."""

    def reference_logprobs(self, stream: str) -> torch.Tensor:
        """The reference model's summed answer log-probs [B] (from the cache, or computed online)."""

    def reference_logits(self, stream: str) -> torch.Tensor:
        """The reference model's logits on a stream (online reference only)."""

    def reference_hidden(self, stream: str, layer: int) -> torch.Tensor:
        """The reference model's output of decoder layer ``layer`` (online reference only)."""


@dataclass
class MethodConfig:
    """Parameters every method has: loss = gamma * forget term + alpha * retain term."""

    name: str = "npo"
    alpha: float = 1.0
    gamma: float = 1.0

    def check(self) -> None:
        """Reject impossible values."""
        require(self.alpha >= 0, "alpha", f"must be >= 0, got {self.alpha}")
        require(self.gamma >= 0, "gamma", f"must be >= 0, got {self.gamma}")


class Method(Protocol):
    """An unlearning (or fine-tuning) method: which batches it needs and how it combines them."""

    config: Any
    # batch streams per step: "forget" (or the training data for finetune), "retain", "idk"
    streams: tuple[str, ...]
    # streams whose reference summed log-probs are a per-example constant, computed once and cached
    cached_reference: tuple[str, ...]
    # True when a reference model must run every step (KL retain term, RMU, reference=online)
    needs_reference_model: bool

    def compute(self, ctx: StepContext) -> LossOutput:
        """The step's loss."""


def mean_item(x: torch.Tensor) -> float:
    """A tensor's mean as a Python float (for logging)."""
    return float(x.detach().float().mean())


def retain_term(ctx: StepContext, kind: str) -> torch.Tensor:
    """The retain regularizer: ``nll`` on retain answers or ``kl`` to the reference model."""
    if kind == "nll":
        return nll_loss(ctx.logprobs("retain"))
    return kl_loss(ctx.logits("retain"), ctx.reference_logits("retain"), ctx.labels("retain"))
