"""What every method shares: per-sequence log-probs, NLL and KL terms, and the method interface.

Losses are functions of tensors (log-probs, logits, hidden states), never of models, so each one is
unit-tested on hand-computable numbers. The engine runs the model; a method asks the engine's
``StepContext`` for the quantities it needs and combines them with its loss functions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import torch
import torch.nn.functional as F

from unlearn.config import require
from unlearn.models.batching import SeqLogProbs
from unlearn.models.prompting import IGNORE_INDEX


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


@dataclass(frozen=True)
class Stream:
    """A batch stream a method trains on: its name, the configured split that feeds it, and an
    optional row transform (IdkDPO: the forget question with a refusal as the answer).

    ``split`` is "forget" (``data.forget_split``), "retain" (``data.retain_split`` or the forget
    split's pair) or "train" (``data.train_splits``, fine-tuning). Streams fed by "forget" or
    "train" are the primary streams: row i of each is the same example, paired position-wise in a
    step with a retain row.
    """

    name: str
    split: Literal["forget", "retain", "train"]
    transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None

    @property
    def primary(self) -> bool:
        """True for streams indexed like the forget (or training) split."""
        return self.split != "retain"


class OneShotContext(Protocol):
    """What the engine offers a one-shot method (no training loop): this rank's batches."""

    model: torch.nn.Module

    def batches(self, stream: str) -> list[dict[str, torch.Tensor]]:
        """This rank's share of a stream, collated and on the model's device."""

    def nll(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The shared answer-token NLL of ``model`` on a batch (``nll_loss``)."""

    def all_reduce(self, t: torch.Tensor) -> torch.Tensor:
        """Sum of ``t`` over ranks."""


class Method(Protocol):
    """An unlearning (or fine-tuning) method: what it needs from the engine, and its loss.

    A method class names this Protocol as its base to inherit the defaults below; the engine reads
    only these members, never a method's name. A new method is one file, one registry line and
    one test.
    """

    config: Any
    # the batch streams of every step (their names are what ``compute`` asks the context for)
    streams: tuple[Stream, ...]
    # streams whose reference summed log-probs are a per-example constant, computed once and cached
    cached_reference: tuple[str, ...] = ()
    # True when a reference model must run every step (KL retain term, RMU, reference=online)
    needs_reference_model: bool = False
    # decoder layers whose outputs ``compute`` reads through ``ctx.hidden`` (RMU)
    hidden_layers: tuple[int, ...] = ()
    # True for methods that edit the weights once (``apply``) instead of training (SSD)
    one_shot: bool = False

    def prepare_model(self, model: torch.nn.Module) -> None:
        """Adjust the freshly loaded model before training (e.g. which parameters train)."""
        return None

    def compute(self, ctx: StepContext) -> LossOutput:
        """The step's loss (training methods)."""
        raise NotImplementedError(f"{type(self).__name__} has no per-step loss")

    def apply(self, ctx: OneShotContext) -> dict[str, float]:
        """Edit ``ctx.model`` in place and return summary numbers (one-shot methods)."""
        raise NotImplementedError(f"{type(self).__name__} is not a one-shot method")


def mean_item(x: torch.Tensor) -> float:
    """A tensor's mean as a Python float (for logging)."""
    return float(x.detach().float().mean())


def retain_term(ctx: StepContext, kind: str) -> torch.Tensor:
    """The retain regularizer: ``nll`` on retain answers or ``kl`` to the reference model."""
    if kind == "nll":
        return nll_loss(ctx.logprobs("retain"))
    return kl_loss(ctx.logits("retain"), ctx.reference_logits("retain"), ctx.labels("retain"))
