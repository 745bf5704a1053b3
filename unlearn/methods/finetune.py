"""``finetune``: plain NLL on answer tokens; builds the target model and the retain-only model."""

from __future__ import annotations

from dataclasses import dataclass

from unlearn.methods.common import (
    LossOutput,
    Method,
    MethodConfig,
    StepContext,
    Stream,
    mean_item,
    nll_term,
)


@dataclass
class FinetuneConfig(MethodConfig):
    """Fine-tuning has no forget term: loss = NLL on the training splits."""

    name: str = "finetune"


class Finetune(Method):
    """loss = mean_i NLL(y_i | x_i) / |y_i| over the training data (``data.train_splits``); with
    ``nll_reduction: token`` the token mean over the global batch."""

    streams = (Stream("train", "train"),)

    def __init__(self, config: FinetuneConfig):
        self.config = config

    def compute(self, ctx: StepContext) -> LossOutput:
        """NLL of the training batch."""
        loss = nll_term(ctx, "train", self.config.nll_reduction)
        return LossOutput(loss, {"train_loss": mean_item(loss)})
