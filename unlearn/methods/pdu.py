"""``pdu``: primal-dual unlearning with logit-margin flattening (Entesari, Hatami, Khaziev,
Ramakrishna, Fazlyab 2025, "Constrained Entropic Unlearning: A Primal-Dual Framework for Large
Language Models", arXiv:2506.05314).

Unlearning as a constrained problem: minimize the forget loss subject to retain NLL <= eps.

    forget term  L_f = mean_t (max_v z_t,v - mean_v z_t,v)^2      (logit-margin flattening: 0
                                                                   when the logits are uniform)
    Lagrangian   L = gamma * L_f + lambda * (L_r - eps)            (L_r the retain NLL)
    dual ascent  lambda <- max(0, lambda + dual_step_size * (L_r - eps))

``alpha`` is lambda's starting value. With ``primal_dual: false`` lambda stays at alpha (plain
gradient difference with the flattening loss). The dual variable is updated after every optimizer
step (``dual_update_upon: step``) from the step's retain loss averaged over all workers, so every
rank holds the same lambda, or after every epoch (``epoch``) from the mean of the epoch's step
losses; updates start once ``dual_warmup_epochs`` epochs are done, and lambda is saved with every
checkpoint (a resumed run continues with it). ``retain_loss_eps`` null: eps = (1 +
``retain_loss_tolerance``) x the starting model's retain NLL, the paper's suggested bound.
open-unlearning's defaults: primal_dual true, dual_step_size 1, dual_update_upon step,
dual_warmup_epochs 5, gamma 1, alpha 1 (it requires eps to be given).

Differences from open-unlearning's PDU: it averages the flattening loss over all B x T positions
(prompt and padding too); here over answer positions, per ``nll_reduction``. It updates lambda
after every micro-batch from that micro-batch's loss; here once per optimizer step from the
global one. Its epoch mode recomputes the retain loss in a separate pass after the epoch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

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
    nll_term,
)
from unlearn.models.prompting import IGNORE_INDEX


def logit_margin_flattening(logits: torch.Tensor) -> torch.Tensor:
    """Per-position forget loss (max_v z_v - mean_v z_v)^2 over the vocabulary ([B, T] for [B, T, V])."""
    z = logits.float()
    return (z.max(-1).values - z.mean(-1)) ** 2


def dual_update(lam: float, retain_loss: float, eps: float, step_size: float) -> float:
    """Projected dual ascent on the retain constraint: max(0, lambda + step * (L_r - eps))."""
    return max(0.0, lam + step_size * (retain_loss - eps))


@dataclass
class PDUConfig(MethodConfig):
    """PDU parameters; alpha is the dual variable's starting value."""

    name: str = "pdu"
    retain_loss_eps: float | None = None  # null: (1 + tolerance) x the starting retain NLL
    retain_loss_tolerance: float = 0.0
    primal_dual: bool = True
    dual_step_size: float = 1.0
    dual_update_upon: Literal["step", "epoch"] = "step"
    dual_warmup_epochs: int = 5

    def check(self) -> None:
        """Step size, tolerance and warmup are non-negative; eps positive when given."""
        super().check()
        require(
            self.retain_loss_eps is None or self.retain_loss_eps > 0,
            "retain_loss_eps",
            f"must be > 0 or null, got {self.retain_loss_eps}",
        )
        require(
            self.retain_loss_tolerance >= 0,
            "retain_loss_tolerance",
            f"must be >= 0, got {self.retain_loss_tolerance}",
        )
        require(
            self.dual_step_size >= 0, "dual_step_size", f"must be >= 0, got {self.dual_step_size}"
        )
        require(
            self.dual_warmup_epochs >= 0,
            "dual_warmup_epochs",
            f"must be >= 0, got {self.dual_warmup_epochs}",
        )


class PDU(Method):
    """loss = gamma * logit-margin flattening(forget) + lambda * (retain NLL - eps), lambda dual."""

    streams = (Stream("forget", "forget"), Stream("retain", "retain"))

    def __init__(self, config: PDUConfig):
        self.config = config
        self.lam = config.alpha
        self.eps = config.retain_loss_eps
        self._epoch_losses: list[float] = []

    def start(self, before: dict[str, float]) -> None:
        """eps from the starting model's retain NLL unless configured."""
        if self.eps is None:
            self.eps = (1.0 + self.config.retain_loss_tolerance) * before["retain_nll"]

    def compute(self, ctx: StepContext) -> LossOutput:
        """The Lagrangian at the current dual variable."""
        if self.eps is None:
            raise RuntimeError("PDU.start must run before training (it sets retain_loss_eps)")
        labels = ctx.labels("forget")
        per = logit_margin_flattening(ctx.logits("forget"))[:, :-1]
        mask = labels[:, 1:] != IGNORE_INDEX
        forget = answer_mean(ctx, "forget", per, mask, self.config.nll_reduction)
        retain = nll_term(ctx, "retain", self.config.nll_reduction)
        loss = self.config.gamma * forget + self.lam * (retain - self.eps)
        return LossOutput(
            loss,
            {
                "forget_loss": mean_item(forget),
                "retain_loss": mean_item(retain),
                "retain_weight": float(self.lam),
            },
        )

    def end_step(self, record: dict[str, Any], epoch_done: bool) -> None:
        """Dual ascent on lambda from the step's (global) retain loss, after the warmup."""
        cfg = self.config
        if not cfg.primal_dual or self.eps is None:
            return
        if cfg.dual_update_upon == "step":
            if record["epoch"] >= cfg.dual_warmup_epochs:
                self.lam = dual_update(
                    self.lam, record["retain_loss"], self.eps, cfg.dual_step_size
                )
            return
        self._epoch_losses.append(record["retain_loss"])
        if epoch_done:
            if record["epoch"] + 1 >= cfg.dual_warmup_epochs:
                mean = sum(self._epoch_losses) / len(self._epoch_losses)
                self.lam = dual_update(self.lam, mean, self.eps, cfg.dual_step_size)
            self._epoch_losses = []

    def state_dict(self) -> dict[str, Any]:
        """The dual variable and the constraint bound."""
        return {"lambda": self.lam, "eps": self.eps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue with the saved dual variable and bound."""
        if state:
            self.lam, self.eps = float(state["lambda"]), float(state["eps"])
