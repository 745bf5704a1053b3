"""``finetune``: plain NLL on answer tokens; builds the target model and the retain-only model."""

from __future__ import annotations

from dataclasses import dataclass

from unlearn.methods.common import LossOutput, MethodConfig, StepContext, mean_item, nll_loss


@dataclass
class FinetuneConfig(MethodConfig):
    """Fine-tuning has no forget term: loss = NLL on the training splits."""

    name: str = "finetune"


class Finetune:
    """loss = mean_i NLL(y_i | x_i) / |y_i| over the training data (stream "forget" carries it)."""

    streams = ("forget",)
    cached_reference: tuple[str, ...] = ()
    needs_reference_model = False

    def __init__(self, config: FinetuneConfig):
        self.config = config

    def compute(self, ctx: StepContext) -> LossOutput:
        """NLL of the training batch."""
        loss = nll_loss(ctx.logprobs("forget"))
        return LossOutput(loss, {"train_loss": mean_item(loss)})
