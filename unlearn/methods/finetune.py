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
    nll_loss,
)


@dataclass
class FinetuneConfig(MethodConfig):
    """Fine-tuning has no forget term: loss = NLL on the training splits."""

    name: str = "finetune"


class Finetune(Method):
    """loss = mean_i NLL(y_i | x_i) / |y_i| over the training data (``data.train_splits``)."""

    streams = (Stream("train", "train"),)

    def __init__(self, config: FinetuneConfig):
        self.config = config

    def compute(self, ctx: StepContext) -> LossOutput:
        """NLL of the training batch."""
        loss = nll_loss(ctx.logprobs("train"))
        return LossOutput(loss, {"train_loss": mean_item(loss)})
