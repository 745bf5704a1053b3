"""``idkdpo``: DPO with a refusal as the preferred answer (Maini et al. 2024, TOFU's "IdkPO";
Rafailov et al. 2023, "Direct Preference Optimization", arXiv:2305.18290).

Forget term: -(2/beta) * log sigmoid(beta * [(log p(idk|x) - log p_ref(idk|x)) -
(log p(y_f|x) - log p_ref(y_f|x))]) with summed answer log-probs; retain NLL. The refusals ship in
``unlearn/resources/idk_answers.txt``; each forget example gets one, chosen by its id, so the
reference log-probs of both answers are per-example constants and are cached.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Literal

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


@cache
def idk_answers() -> tuple[str, ...]:
    """The shipped refusal answers."""
    text = resources.files("unlearn.resources").joinpath("idk_answers.txt").read_text()
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def idk_answer_for(example_id: str) -> str:
    """The refusal paired with an example: stable across runs, workers and resumes."""
    answers = idk_answers()
    return answers[int(hashlib.sha256(example_id.encode()).hexdigest(), 16) % len(answers)]


def with_refusal(row: dict[str, Any]) -> dict[str, Any]:
    """The forget row with its refusal (``idk_answer_for``) as the answer: IdkDPO's chosen stream."""
    return {**row, "answer": idk_answer_for(row["id"])}


def dpo_loss(
    chosen_logp: torch.Tensor,
    chosen_ref: torch.Tensor,
    rejected_logp: torch.Tensor,
    rejected_ref: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """Per-example DPO loss: -(2/beta) * log sigmoid(beta * ((c - c_ref) - (r - r_ref))).

    The 2/beta scale follows open-unlearning, so that beta -> 0 recovers gradient difference.
    """
    margin = (chosen_logp - chosen_ref) - (rejected_logp - rejected_ref)
    return -(2.0 / beta) * F.logsigmoid(beta * margin)


@dataclass
class IdkDPOConfig(MethodConfig):
    """IdkDPO defaults from open-unlearning: beta 0.1, alpha 1, gamma 1."""

    name: str = "idkdpo"
    beta: float = 0.1
    retain_loss: Literal["nll", "kl"] = "nll"
    reference: Literal["cached", "online"] = "cached"

    def check(self) -> None:
        """beta must be positive."""
        super().check()
        require(self.beta > 0, "beta", f"must be > 0, got {self.beta}")


class IdkDPO(Method):
    """loss = gamma * mean(dpo_loss(idk preferred over the forget answer)) + alpha * retain term."""

    streams = (
        Stream("forget", "forget"),
        Stream("idk", "forget", transform=with_refusal),
        Stream("retain", "retain"),
    )

    def __init__(self, config: IdkDPOConfig):
        self.config = config
        self.cached_reference = ("forget", "idk") if config.reference == "cached" else ()
        self.needs_reference_model = config.reference == "online" or config.retain_loss == "kl"

    def compute(self, ctx: StepContext) -> LossOutput:
        """DPO toward refusals on the forget questions, plus the retain term."""
        forget = dpo_loss(
            ctx.logprobs("idk").sum,
            ctx.reference_logprobs("idk"),
            ctx.logprobs("forget").sum,
            ctx.reference_logprobs("forget"),
            self.config.beta,
        ).mean()
        retain = retain_term(ctx, self.config.retain_loss, self.config.nll_reduction)
        loss = self.config.gamma * forget + self.config.alpha * retain
        return LossOutput(
            loss, {"forget_loss": mean_item(forget), "retain_loss": mean_item(retain)}
        )
