"""Tokenized streams and the deterministic batch schedule shared by every worker.

A step consumes ``batch_size`` examples of the primary stream (the forget split, or the training
data for fine-tuning), each paired position-wise with a retain example (and, for IdkDPO, the same
question with a refusal). The schedule is a pure function of (seed, epoch), computed identically on
every rank, padded by wrap-around to whole steps so every rank runs the same number of micro-batches
(unequal counts deadlock collective ops: DeepSpeed #2223).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from unlearn.models.batching import pad_right
from unlearn.models.prompting import encode_qa


@dataclass(frozen=True)
class Example:
    """One tokenized QA pair: ``index`` is its position in its stream (the reference-cache key)."""

    index: int
    id: str
    input_ids: list[int]
    labels: list[int]


def tokenize(
    tokenizer: Any, records: Sequence[dict[str, Any]], max_length: int, answer_key: str = "answer"
) -> list[Example]:
    """Encode rows with the shared prompt format; ``answer_key`` picks the answer column."""
    out = []
    for i, r in enumerate(records):
        enc = encode_qa(tokenizer, r["question"], r[answer_key], max_length)
        out.append(Example(i, r["id"], enc["input_ids"], enc["labels"]))
    return out


def collate(examples: Sequence[Example], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad examples into input_ids / attention_mask / labels (``pad_right``) plus ``index``."""
    batch = pad_right([e.input_ids for e in examples], [e.labels for e in examples], pad_id)
    batch["index"] = torch.tensor([e.index for e in examples], dtype=torch.long)
    return batch


@dataclass(frozen=True)
class Schedule:
    """Which examples each rank uses at each step of each epoch."""

    primary_size: int
    retain_size: int  # 0 when the method uses no retain stream
    batch_size: int
    micro_batch_size: int
    world_size: int
    seed: int

    @property
    def steps_per_epoch(self) -> int:
        """Optimizer steps per epoch: ceil(primary examples / global batch)."""
        return math.ceil(self.primary_size / self.batch_size)

    @property
    def grad_accum(self) -> int:
        """Micro-batches per step on each rank."""
        return self.batch_size // (self.micro_batch_size * self.world_size)

    def _perm(self, n: int, epoch: int, salt: str) -> list[int]:
        order = list(range(n))
        random.Random(f"{self.seed}:{epoch}:{salt}").shuffle(order)
        return order

    def epoch(self, epoch: int, rank: int) -> Iterator[list[dict[str, list[int]]]]:
        """Yield, per step, this rank's micro-batches as {"primary": idx, "retain": idx}."""
        primary = self._perm(self.primary_size, epoch, "primary")
        retain = self._perm(self.retain_size, epoch, "retain") if self.retain_size else []
        for step in range(self.steps_per_epoch):
            micro = []
            for a in range(self.grad_accum):
                chunk = a * self.world_size + rank
                start = step * self.batch_size + chunk * self.micro_batch_size
                positions = range(start, start + self.micro_batch_size)
                mb = {"primary": [primary[p % self.primary_size] for p in positions]}
                if retain:
                    mb["retain"] = [retain[p % self.retain_size] for p in positions]
                micro.append(mb)
            yield micro


def shard(
    n: int, rank: int, world_size: int, batch_size: int
) -> list[tuple[list[int], list[bool]]]:
    """Batches of indices 0..n-1 for one rank, every rank getting the same number of batches.

    Ranks take a contiguous share; short shares are padded (with index 0, flagged False in the
    second list) so that collective forward passes stay in lockstep; callers drop padded rows.
    """
    per_rank = math.ceil(n / world_size)
    mine = list(range(rank * per_rank, min(n, (rank + 1) * per_rank)))
    n_batches = max(1, math.ceil(per_rank / batch_size))
    real = [True] * len(mine) + [False] * (n_batches * batch_size - len(mine))
    padded = mine + [0] * (len(real) - len(mine))
    return [
        (padded[i * batch_size : (i + 1) * batch_size], real[i * batch_size : (i + 1) * batch_size])
        for i in range(n_batches)
    ]
