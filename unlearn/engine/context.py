"""The ``StepContext`` methods see: one joint forward of every stream, plus the reference.

All trainable streams of a micro-batch (forget, retain, idk, ...) go through the model in ONE
forward pass (``joint_batch``: one right-padded batch, each stream a slice of its rows): DDP and
ZeRO-3 expect one forward per backward, and one larger matmul beats several small ones. The reference comes from the cache
(summed log-probs per example) or from a reference model run online.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from unlearn.engine.data import Example, collate
from unlearn.models.batching import SeqLogProbs, sequence_logprobs
from unlearn.models.prompting import IGNORE_INDEX


def joint_batch(
    streams: dict[str, Sequence[Example]], pad_id: int
) -> tuple[dict[str, torch.Tensor], dict[str, slice]]:
    """Every stream's rows in one right-padded batch; returns (batch, rows of each stream)."""
    rows: dict[str, slice] = {}
    examples: list[Example] = []
    for name, part in streams.items():
        rows[name] = slice(len(examples), len(examples) + len(part))
        examples.extend(part)
    return collate(examples, pad_id), rows


class Context:
    """One micro-batch's view for a method; computes lazily and caches what it computed."""

    def __init__(
        self,
        forward: Callable[..., Any],
        batch: dict[str, torch.Tensor],
        rows: dict[str, slice],
        hidden_layers: tuple[int, ...] = (),
        reference_model: torch.nn.Module | None = None,
        reference_cache: dict[str, torch.Tensor] | None = None,
        token_normalizers: dict[str, float] | None = None,
    ):
        self._forward = forward
        self.batch = batch
        self.rows = rows
        self.hidden_layers = hidden_layers
        self.reference_model = reference_model
        self.reference_cache = reference_cache or {}
        # the loop's all-reduced per-step token counts (see ``token_normalizer``)
        self.token_normalizers = token_normalizers
        self._out: Any = None
        self._ref: dict[str, Any] = {}

    @classmethod
    def from_streams(
        cls,
        forward: Callable[..., Any],
        streams: dict[str, Sequence[Example]],
        pad_id: int,
        device: torch.device | str = "cpu",
        **kwargs: Any,
    ) -> Context:
        """A context over tokenized stream rows (collated into one joint batch on ``device``)."""
        batch, rows = joint_batch(streams, pad_id)
        return cls(forward, {k: v.to(device) for k, v in batch.items()}, rows, **kwargs)

    def _model_out(self) -> Any:
        if self._out is None:
            self._out = self._forward(
                input_ids=self.batch["input_ids"],
                attention_mask=self.batch["attention_mask"],
                output_hidden_states=bool(self.hidden_layers),
                use_cache=False,
            )
        return self._out

    def field(self, stream: str, name: str) -> torch.Tensor:
        """One of the batch's tensors (``input_ids``, ``attention_mask``, ``labels``, ``index``)
        restricted to a stream's rows."""
        return self.batch[name][self.rows[stream]]

    def labels(self, stream: str) -> torch.Tensor:
        """A stream's labels."""
        return self.field(stream, "labels")

    def logits(self, stream: str) -> torch.Tensor:
        """The trained model's logits on a stream."""
        return self._model_out().logits[self.rows[stream]]

    def logprobs(self, stream: str) -> SeqLogProbs:
        """The trained model's answer log-probs on a stream."""
        return sequence_logprobs(self.logits(stream), self.labels(stream))

    def token_normalizer(self, stream: str) -> float:
        """The step's answer tokens of ``stream`` over all micro-batches and workers divided by
        the micro-batches the gradient averages (given by the loop); without them (a context
        built on its own) this micro-batch is the whole step: its own answer-token count."""
        if self.token_normalizers is not None:
            return self.token_normalizers[stream]
        return max(1.0, float((self.labels(stream)[:, 1:] != IGNORE_INDEX).sum()))

    def hidden(self, stream: str, layer: int) -> torch.Tensor:
        """Output of decoder layer ``layer`` on a stream."""
        return self._model_out().hidden_states[layer + 1][self.rows[stream]]

    def _reference_out(self, stream: str) -> Any:
        if self.reference_model is None:
            raise RuntimeError("this method needs an online reference model (reference=online)")
        if stream not in self._ref:
            with torch.no_grad():
                self._ref[stream] = self.reference_model(
                    input_ids=self.field(stream, "input_ids"),
                    attention_mask=self.field(stream, "attention_mask"),
                    output_hidden_states=bool(self.hidden_layers),
                    use_cache=False,
                )
        return self._ref[stream]

    def reference_logprobs(self, stream: str) -> torch.Tensor:
        """Reference summed answer log-probs [B]: the cache when it holds the stream, else online."""
        if stream in self.reference_cache:
            index = self.field(stream, "index").cpu()
            return self.reference_cache[stream][index].to(self.labels(stream).device)
        return sequence_logprobs(self._reference_out(stream).logits, self.labels(stream)).sum

    def reference_logits(self, stream: str) -> torch.Tensor:
        """Reference logits (online reference only)."""
        return self._reference_out(stream).logits

    def reference_hidden(self, stream: str, layer: int) -> torch.Tensor:
        """Reference output of decoder layer ``layer`` (online reference only)."""
        return self._reference_out(stream).hidden_states[layer + 1]
