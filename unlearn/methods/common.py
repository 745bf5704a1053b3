"""What every method shares: per-sequence log-probs, NLL and KL terms, and the method interface.

Losses are functions of tensors (log-probs, logits, hidden states), never of models, so each one is
unit-tested on hand-computable numbers. The engine runs the model; a method asks the engine's
``StepContext`` for the quantities it needs and combines them with its loss functions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import torch
import torch.nn.functional as F

from unlearn.config import require
from unlearn.models.batching import SeqLogProbs
from unlearn.models.prompting import IGNORE_INDEX

# How a per-token term (an NLL, a KL, a token-weighted forget loss) is averaged over a batch:
#   "example": mean over examples of each example's mean over its answer tokens (every example
#              weighs the same, whatever its length);
#   "token":   sum over all answer tokens of the step's global batch / their number (long answers
#              weigh more: the Hugging Face token mean open-unlearning uses).
# Both are independent of how the global batch is split into micro-batches and workers (the
# token form divides by the all-reduced token count, ``StepContext.token_normalizer``), so every
# backend computes the same loss. "example" is the default (see docs/architecture.md).
NllReduction = Literal["example", "token"]
NLL_REDUCTIONS = ("example", "token")


def nll_loss(logp: SeqLogProbs) -> torch.Tensor:
    """Mean over examples of each example's mean answer-token NLL: mean_i(-sum_t log p / |y_i|).

    Per-example averaging (rather than HF's token-mean over the whole batch) makes the value
    independent of how a global batch is split into micro-batches and workers, so every backend
    computes the same loss. ``answer_mean(..., "token")`` is the token-mean alternative.
    """
    return -(logp.mean).mean()


def answer_mean(
    ctx: StepContext,
    stream: str,
    values: torch.Tensor,
    mask: torch.Tensor,
    reduction: str = "example",
) -> torch.Tensor:
    """Average per-token ``values`` [B, T-1] over a stream's answer tokens (``mask`` [B, T-1]).

    example: mean_i( sum_t m_it v_it / sum_t m_it ).
    token:   sum_it m_it v_it / N, N = ``ctx.token_normalizer(stream)``: the step's answer
             tokens over all micro-batches and workers divided by the number of micro-batches the
             gradient averages, so that after the backend's averaging the loss is exactly
             sum over the global batch / its token count (open-unlearning's HF token mean).
    """
    m = mask.to(values.dtype)
    if reduction == "example":
        return ((values * m).sum(-1) / m.sum(-1).clamp(min=1)).mean()
    if reduction == "token":
        return (values * m).sum() / ctx.token_normalizer(stream)
    raise ValueError(f"nll_reduction {reduction!r} is not one of {NLL_REDUCTIONS}")


def nll_term(ctx: StepContext, stream: str, reduction: str = "example") -> torch.Tensor:
    """The answer-token NLL of a stream, averaged per ``reduction`` (``answer_mean``)."""
    logp = ctx.logprobs(stream)
    if reduction == "example":
        return nll_loss(logp)
    return answer_mean(ctx, stream, -logp.token, logp.mask, reduction)


def token_kl(logits: torch.Tensor, ref_logits: torch.Tensor) -> torch.Tensor:
    """KL(p_ref || p_theta) over the vocabulary at each position that predicts a label [B, T-1]."""
    logp = F.log_softmax(logits[:, :-1].float(), dim=-1)
    ref_logp = F.log_softmax(ref_logits[:, :-1].float(), dim=-1)
    return (ref_logp.exp() * (ref_logp - logp)).sum(-1)


def kl_loss(logits: torch.Tensor, ref_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """KL(p_ref || p_theta) over the vocabulary at answer positions, averaged per example then over the batch.

    The retain regularizer of NPO-KL / GradDiff-KL (Zhang et al. 2024, "Negative Preference
    Optimization"; open-unlearning's ``compute_kl_divergence``).
    """
    mask = (labels[:, 1:] != IGNORE_INDEX).float()
    kl = token_kl(logits, ref_logits)  # [B, T-1]
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

    def token_normalizer(self, stream: str) -> float:
        """The stream's answer tokens in the whole step (every micro-batch of every worker, as
        ``Method.token_count`` counts them) divided by the number of micro-batches the step's
        gradient averages (workers x accumulation steps): a micro-batch's token sum divided by it
        is its exact share of the global batch's token mean."""


@dataclass
class MethodConfig:
    """Parameters every method has: loss = gamma * forget term + alpha * retain term.

    ``nll_reduction`` averages the method's per-token terms (NLL, KL, token-weighted forget
    losses) per example ("example", the default) or over all answer tokens of the global batch
    ("token", open-unlearning's HF token mean); see ``answer_mean``.
    """

    name: str = "npo"
    alpha: float = 1.0
    gamma: float = 1.0
    nll_reduction: NllReduction = "example"

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

    def token_count(self, stream: str, labels: Sequence[int]) -> int:
        """How many of one example's tokens the method's token means average over (the engine
        sums this over a step for ``StepContext.token_normalizer``); default: its answer tokens."""
        return sum(1 for y in labels[1:] if y != IGNORE_INDEX)

    def start(self, before: dict[str, float]) -> None:
        """Called once on every rank before the first step (also on resume) with the starting
        model's mean NLL of each data stream (``forget_nll``, ``retain_nll``: the run's
        ``loss_before``)."""
        return None

    def end_step(self, record: dict[str, Any], epoch_done: bool) -> None:
        """Called on every rank after each optimizer step with the step's logged terms averaged
        over micro-batches and workers (the same numbers on every rank), ``step`` and ``epoch``;
        ``epoch_done`` on an epoch's last step."""
        return None

    def state_dict(self) -> dict[str, Any]:
        """The method's own training state (JSON numbers), saved with every checkpoint."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned (on resume)."""
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


def retain_term(ctx: StepContext, kind: str, reduction: str = "example") -> torch.Tensor:
    """The retain regularizer: ``nll`` on retain answers or ``kl`` to the reference model,
    averaged over answer tokens per ``reduction`` (``answer_mean``)."""
    if kind == "nll":
        return nll_term(ctx, "retain", reduction)
    kl = token_kl(ctx.logits("retain"), ctx.reference_logits("retain"))
    return answer_mean(ctx, "retain", kl, ctx.labels("retain")[:, 1:] != IGNORE_INDEX, reduction)
