"""Evaluation fixtures: a nano model that memorized the synthetic data, and a retain-only one."""

from __future__ import annotations

import contextlib
import os
import random
from dataclasses import dataclass
from typing import Any

import pytest
import torch

# Enough for the nano model to reproduce its training answers (forget ROUGE-L recall ~1).
STEPS = int(os.environ.get("UNLEARN_TEST_EVAL_STEPS", "150"))


@dataclass
class Trained:
    """A tokenizer, a model trained on full + world_facts (target) and one on retain + world_facts."""

    dataset: Any
    tokenizer: Any
    target: Any
    retain: Any


def train_nano(tokenizer, rows, steps: int, seed: int):
    """A nano Llama trained on ``rows`` (QA pairs, answer tokens only) with a plain torch loop."""
    from unlearn.models import IGNORE_INDEX, build_tiny_model, encode_qa

    model = build_tiny_model(tokenizer, "nano", max_positions=128, seed=seed)
    enc = [encode_qa(tokenizer, r["question"], r["answer"], 96) for r in rows]
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3)
    rng = random.Random(seed)
    for _ in range(steps):
        batch = rng.sample(enc, min(32, len(enc)))
        width = max(len(e["input_ids"]) for e in batch)
        ids = torch.full((len(batch), width), tokenizer.pad_token_id)
        labels = torch.full((len(batch), width), IGNORE_INDEX)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, e in enumerate(batch):
            n = len(e["input_ids"])
            ids[i, :n], labels[i, :n], mask[i, :n] = (
                torch.tensor(e["input_ids"]),
                torch.tensor(e["labels"]),
                1,
            )
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    return model.eval()


@contextlib.contextmanager
def one_thread():
    """Run torch on one thread: on this shared 2-core machine two spinning OpenMP threads per
    process made training ~20x slower under load."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _single_thread():
    with one_thread():
        yield


@pytest.fixture(scope="session")
def trained(tiny_data) -> Trained:
    """Target and retain-only nano models on the shared tiny synthetic dataset (seconds)."""
    from unlearn.data import Dataset
    from unlearn.models import dataset_texts, train_tokenizer

    ds = Dataset(tiny_data)
    tok = train_tokenizer(dataset_texts([r for s in ds.splits for r in ds.records(s)]), 512)
    world = ds.records("world_facts")
    with one_thread():
        target = train_nano(tok, ds.records("full") + world, steps=STEPS, seed=0)
        retain = train_nano(tok, ds.records("retain90") + world, steps=STEPS, seed=1)
    return Trained(ds, tok, target, retain)
