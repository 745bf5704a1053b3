"""Token sequences to tensors and back: the one right-padding collate and the one answer-token
log-prob function that training (every method's loss) and evaluation (every metric) share.

Sequences come from ``unlearn.models.prompting.encode_qa``: prompt tokens are ``IGNORE_INDEX`` in
the labels, so everything here sees answer tokens only. Right padding keeps positions 0..n-1, so no
position ids are needed and a padded row's logits equal the unpadded row's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from unlearn.models.prompting import IGNORE_INDEX


def pad_right(
    input_ids: Sequence[Sequence[int]],
    labels: Sequence[Sequence[int]],
    pad_id: int,
) -> dict[str, torch.Tensor]:
    """Right-pad token rows into ``input_ids`` / ``attention_mask`` / ``labels`` tensors [B, T].

    Padding is ``pad_id`` in the inputs, 0 in the mask and ``IGNORE_INDEX`` in the labels.
    """
    if len(input_ids) != len(labels) or not input_ids:
        raise ValueError(f"{len(input_ids)} input rows and {len(labels)} label rows")
    width = max(len(r) for r in input_ids)
    ids = torch.full((len(input_ids), width), pad_id, dtype=torch.long)
    out_labels = torch.full((len(input_ids), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(input_ids), width), dtype=torch.long)
    for row, (x, y) in enumerate(zip(input_ids, labels)):
        if len(x) != len(y):
            raise ValueError(f"row {row}: {len(x)} input ids but {len(y)} labels")
        ids[row, : len(x)] = torch.tensor(x, dtype=torch.long)
        out_labels[row, : len(y)] = torch.tensor(y, dtype=torch.long)
        mask[row, : len(x)] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": out_labels}


def answer_positions(
    logits: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The logits that predict answer tokens, those tokens, and where they are.

    Position t predicts label t+1 (causal shift). Args: ``logits`` [B, T, V], ``labels`` [B, T]
    (IGNORE_INDEX masked). Returns (logits [N, V], targets [N], mask [B, T-1]) with the N answer
    positions in row-major order, so each example's tokens are contiguous.
    """
    if logits.shape[:2] != labels.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} disagree")
    targets = labels[:, 1:]
    mask = targets != IGNORE_INDEX
    return logits[:, :-1][mask], targets[mask], mask


@dataclass
class SeqLogProbs:
    """Answer-token log-probs of a batch: ``token`` [B, T-1] (0 where masked), ``sum`` [B], ``count`` [B]."""

    token: torch.Tensor
    mask: torch.Tensor
    sum: torch.Tensor
    count: torch.Tensor

    @property
    def mean(self) -> torch.Tensor:
        """Per-example mean answer-token log-prob [B] (-mean NLL)."""
        return self.sum / self.count.clamp(min=1)


def sequence_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> SeqLogProbs:
    """log p(y_t | x, y_<t) of every answer token, per example, differentiable.

    log_softmax runs in float32 over the answer positions only (``answer_positions``), which is
    also what evaluation's scoring selects: training and evaluation agree to the last token.
    """
    sel, targets, mask = answer_positions(logits, labels)
    lp = F.log_softmax(sel.float(), dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    token = torch.zeros(mask.shape, dtype=lp.dtype, device=lp.device).masked_scatter(mask, lp)
    return SeqLogProbs(token=token, mask=mask, sum=token.sum(-1), count=mask.sum(-1))
