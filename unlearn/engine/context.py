"""The ``StepContext`` methods see: one joint forward of every stream, plus the reference.

All trainable streams of a micro-batch (forget, retain, idk) go through the model in ONE forward
pass (concatenated, right-padded to a common width): DDP and ZeRO-3 expect one forward per
backward, and one larger matmul beats several small ones. The reference comes from the cache
(summed log-probs per example) or from a reference model run online.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from unlearn.methods.common import SeqLogProbs, sequence_logprobs
from unlearn.models.prompting import IGNORE_INDEX


def concat_streams(
    batches: dict[str, dict[str, torch.Tensor]], pad_id: int
) -> tuple[dict[str, torch.Tensor], dict[str, slice]]:
    """Stack streams into one batch padded to a common width; returns (batch, rows per stream)."""
    width = max(b["input_ids"].shape[1] for b in batches.values())
    parts: dict[str, list[torch.Tensor]] = {"input_ids": [], "attention_mask": [], "labels": []}
    rows: dict[str, slice] = {}
    start = 0
    for name, b in batches.items():
        extra = width - b["input_ids"].shape[1]
        parts["input_ids"].append(F.pad(b["input_ids"], (0, extra), value=pad_id))
        parts["attention_mask"].append(F.pad(b["attention_mask"], (0, extra), value=0))
        parts["labels"].append(F.pad(b["labels"], (0, extra), value=IGNORE_INDEX))
        n = b["input_ids"].shape[0]
        rows[name] = slice(start, start + n)
        start += n
    return {k: torch.cat(v) for k, v in parts.items()}, rows


class Context:
    """One micro-batch's view for a method; computes lazily and caches what it computed."""

    def __init__(
        self,
        forward: Callable[..., Any],
        batches: dict[str, dict[str, torch.Tensor]],
        pad_id: int,
        hidden_layers: tuple[int, ...] = (),
        reference_model: torch.nn.Module | None = None,
        reference_cache: dict[str, torch.Tensor] | None = None,
    ):
        self._forward = forward
        self.batches = batches
        self.pad_id = pad_id
        self.hidden_layers = hidden_layers
        self.reference_model = reference_model
        self.reference_cache = reference_cache or {}
        self._out: dict[str, Any] | None = None
        self._ref: dict[str, Any] = {}

    def _model_out(self) -> dict[str, Any]:
        if self._out is None:
            joint, rows = concat_streams(self.batches, self.pad_id)
            out = self._forward(
                input_ids=joint["input_ids"],
                attention_mask=joint["attention_mask"],
                output_hidden_states=bool(self.hidden_layers),
                use_cache=False,
            )
            width = {name: b["input_ids"].shape[1] for name, b in self.batches.items()}
            self._out = {
                name: {
                    "logits": out.logits[r, : width[name]],
                    "hidden": {
                        layer: out.hidden_states[layer + 1][r, : width[name]]
                        for layer in self.hidden_layers
                    },
                }
                for name, r in rows.items()
            }
        return self._out

    def labels(self, stream: str) -> torch.Tensor:
        """A stream's labels."""
        return self.batches[stream]["labels"]

    def logits(self, stream: str) -> torch.Tensor:
        """The trained model's logits on a stream."""
        return self._model_out()[stream]["logits"]

    def logprobs(self, stream: str) -> SeqLogProbs:
        """The trained model's answer log-probs on a stream."""
        return sequence_logprobs(self.logits(stream), self.labels(stream))

    def hidden(self, stream: str, layer: int) -> torch.Tensor:
        """Output of decoder layer ``layer`` on a stream."""
        return self._model_out()[stream]["hidden"][layer]

    def _reference_out(self, stream: str) -> dict[str, Any]:
        if self.reference_model is None:
            raise RuntimeError("this method needs an online reference model (reference=online)")
        if stream not in self._ref:
            b = self.batches[stream]
            with torch.no_grad():
                out = self.reference_model(
                    input_ids=b["input_ids"],
                    attention_mask=b["attention_mask"],
                    output_hidden_states=bool(self.hidden_layers),
                    use_cache=False,
                )
            self._ref[stream] = {
                "logits": out.logits,
                "hidden": {layer: out.hidden_states[layer + 1] for layer in self.hidden_layers},
            }
        return self._ref[stream]

    def reference_logprobs(self, stream: str) -> torch.Tensor:
        """Reference summed answer log-probs [B]: the cache when it holds the stream, else online."""
        if stream in self.reference_cache:
            return self.reference_cache[stream][self.batches[stream]["index"].cpu()].to(
                self.labels(stream).device
            )
        return sequence_logprobs(self._reference_out(stream)["logits"], self.labels(stream)).sum

    def reference_logits(self, stream: str) -> torch.Tensor:
        """Reference logits (online reference only)."""
        return self._reference_out(stream)["logits"]

    def reference_hidden(self, stream: str, layer: int) -> torch.Tensor:
        """Reference output of decoder layer ``layer`` (online reference only)."""
        return self._reference_out(stream)["hidden"][layer]
