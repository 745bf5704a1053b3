"""``rmu``: Representation Misdirection for Unlearning (Li et al. 2024, "The WMDP Benchmark",
arXiv:2403.03218).

Forget term: mean over answer tokens of mean_h (h_l(x_f) - c*u)^2, steering decoder layer l's
output on forget data toward a fixed random unit vector u scaled by c. Retain term: mean over
answer tokens of mean_h (h_l(x_r) - h_l_ref(x_r))^2, keeping retain activations at the frozen
reference's. Only the parameters of ``trainable_layers`` are updated (WMDP: the MLPs of layers
l-2..l). open-unlearning's TOFU setting: c 2, layer 7 of a 16-layer model.

Both terms are averaged per example (each example's mean over its answer positions, then the mean
over examples; ``nll_reduction: token`` averages over all answer positions of the global batch).
open-unlearning's RMU divides the per-example sums S [B] by the per-example token counts n [B, 1]
and averages the broadcast [B, B] product, i.e. computes mean(S) * mean(1/n) instead of
mean(S / n): a bug (the two differ whenever answer lengths differ), not followed here. Its mask is
also ``labels != -100`` on unshifted labels (the positions holding answer tokens); ours marks the
positions that predict them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import torch

from unlearn.config import require
from unlearn.errors import ConfigError
from unlearn.methods.common import (
    LossOutput,
    Method,
    MethodConfig,
    StepContext,
    Stream,
    answer_mean,
    mean_item,
)
from unlearn.models.prompting import IGNORE_INDEX


def masked_mse(hidden: torch.Tensor, target: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """mean_i [ sum_t m_it * mean_h (hidden - target)^2 / sum_t m_it ], m the answer-token mask.

    ``hidden`` [B, T, H]; ``target`` broadcastable to it; ``labels`` [B, T]. The mask marks the
    positions whose next token is an answer token (the positions that produce the answer).
    """
    mask = torch.zeros_like(labels, dtype=hidden.dtype)
    mask[:, :-1] = (labels[:, 1:] != IGNORE_INDEX).to(hidden.dtype)
    per_token = ((hidden.float() - target.float()) ** 2).mean(-1)
    return ((per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1)).mean()


def rmu_term(
    ctx: StepContext, stream: str, hidden: torch.Tensor, target: torch.Tensor, reduction: str
) -> torch.Tensor:
    """``masked_mse`` of a stream through ``answer_mean`` (per-example or token mean)."""
    per_token = ((hidden.float() - target.float()) ** 2).mean(-1)[:, :-1]  # [B, T-1]
    mask = ctx.labels(stream)[:, 1:] != IGNORE_INDEX
    return answer_mean(ctx, stream, per_token, mask, reduction)


def control_vector(hidden_size: int, coeff: float, seed: int) -> torch.Tensor:
    """c * u with u a random unit vector drawn from a seeded generator (same on every rank)."""
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(hidden_size, generator=g)
    return coeff * u / u.norm()


@dataclass
class RMUConfig(MethodConfig):
    """RMU parameters: the steered layer, coefficient and which layers train."""

    name: str = "rmu"
    layer: int = 1
    steering_coeff: float = 6.5
    trainable_layers: list[int] = field(default_factory=list)  # default: layer-2 .. layer
    trainable_params: str = r"mlp\."  # regex on parameter names inside a trainable layer
    alpha: float = 100.0
    seed: int = 0

    def check(self) -> None:
        """Layers are non-negative; the coefficient positive."""
        super().check()
        require(self.layer >= 0, "layer", f"must be >= 0, got {self.layer}")
        require(
            self.steering_coeff > 0, "steering_coeff", f"must be > 0, got {self.steering_coeff}"
        )
        require(all(x >= 0 for x in self.trainable_layers), "trainable_layers", "must be >= 0")
        try:
            re.compile(self.trainable_params)
        except re.error as exc:
            require(False, "trainable_params", f"is not a valid regex: {exc}")

    @property
    def layers(self) -> list[int]:
        """The decoder layers whose parameters train."""
        return self.trainable_layers or list(range(max(0, self.layer - 2), self.layer + 1))


class RMU(Method):
    """loss = gamma * masked_mse(h_l(forget), c*u) + alpha * masked_mse(h_l(retain), h_l_ref(retain))."""

    streams = (Stream("forget", "forget"), Stream("retain", "retain"))
    needs_reference_model = True

    def __init__(self, config: RMUConfig):
        self.config = config
        self.hidden_layers = (config.layer,)
        self._control: torch.Tensor | None = None

    def prepare_model(self, model: Any) -> None:
        """Freeze every parameter but those of the trainable layers matching ``trainable_params``."""
        n_layers = model.config.num_hidden_layers
        if self.config.layer >= n_layers or max(self.config.layers) >= n_layers:
            raise ConfigError(
                f"method.layer / trainable_layers: the model has {n_layers} layers (0..{n_layers - 1})"
            )
        pattern = re.compile(r"layers\.(\d+)\.(.*)")
        selected = re.compile(self.config.trainable_params)
        for name, p in model.named_parameters():
            m = pattern.search(name)
            p.requires_grad = bool(
                m and int(m.group(1)) in self.config.layers and selected.search(m.group(2))
            )
        self._control = control_vector(
            model.config.hidden_size, self.config.steering_coeff, self.config.seed
        )

    def compute(self, ctx: StepContext) -> LossOutput:
        """Steer forget activations to c*u; hold retain activations at the reference's."""
        if self._control is None:
            raise RuntimeError("RMU.prepare_model must run before training")
        layer = self.config.layer
        reduction = self.config.nll_reduction
        h_f = ctx.hidden("forget", layer)
        forget = rmu_term(ctx, "forget", h_f, self._control.to(h_f.device), reduction)
        retain = rmu_term(
            ctx,
            "retain",
            ctx.hidden("retain", layer),
            ctx.reference_hidden("retain", layer),
            reduction,
        )
        loss = self.config.gamma * forget + self.config.alpha * retain
        return LossOutput(
            loss, {"forget_loss": mean_item(forget), "retain_loss": mean_item(retain)}
        )
