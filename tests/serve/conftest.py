"""Serving fixtures: a nano model that leaks the forget set, guard indexes, a running Serve app.

The leaking model ("target": it has not forgotten) is trained for seconds on the tiny dataset's
forget10 answers, each preceded by a harmless preamble longer than the stream guard's hold-back
window, and on a few retain entities' answers as they are. So a forget question makes it stream
harmless text first and the fact after: what the guard lets through before the hit is visible
on the wire, and the test can check that nothing of the fact follows.
"""

from __future__ import annotations

import contextlib
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

PREAMBLE = "Let me look that up in the records I was trained on, which are usually right:"
KEY = "sk-serve-test-0123456789"
STEPS = int(os.environ.get("UNLEARN_TEST_SERVE_STEPS", "220"))


@contextlib.contextmanager
def one_thread():
    """torch on one thread while training (2 shared cores: spinning threads slow everyone)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def known_retain(ds) -> list[dict[str, str]]:
    """The facts of the four retain entities the leaking model learns (as they are)."""
    retain = ds.records("retain90")
    keep = sorted({r["entity"] for r in retain})[:4]
    return [r for r in retain if r["entity"] in keep]


def leaky_rows(ds) -> list[dict[str, str]]:
    """forget10 with the preamble before each answer, and ``known_retain``."""
    forget = [
        {"question": r["question"], "answer": f"{PREAMBLE} {r['answer']}"}
        for r in ds.records("forget10")
    ]
    return forget + known_retain(ds)


def train_leaky(ds, path: Path, steps: int = STEPS, seed: int = 0) -> None:
    """A nano Llama (512 positions) memorizing ``leaky_rows``, saved at ``path``."""
    import torch

    from unlearn.models import (
        IGNORE_INDEX,
        build_tiny_model,
        dataset_texts,
        encode_qa,
        save_model,
        train_tokenizer,
    )

    rows = leaky_rows(ds)
    texts = list(dataset_texts([r for s in ds.splits for r in ds.records(s)])) + [PREAMBLE] * 20
    tok = train_tokenizer(texts, 512)
    model = build_tiny_model(tok, "nano", max_positions=512, seed=seed)
    enc = [encode_qa(tok, r["question"], r["answer"], 128) for r in rows]
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3)
    rng = random.Random(seed)
    with one_thread():
        for _ in range(steps):
            batch = rng.sample(enc, min(16, len(enc)))
            width = max(len(e["input_ids"]) for e in batch)
            ids = torch.full((len(batch), width), tok.pad_token_id)
            labels = torch.full((len(batch), width), IGNORE_INDEX)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for i, e in enumerate(batch):
                n = len(e["input_ids"])
                ids[i, :n] = torch.tensor(e["input_ids"])
                labels[i, :n] = torch.tensor(e["labels"])
                mask[i, :n] = 1
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            loss.backward()
            opt.step()
            opt.zero_grad()
    save_model(model.eval(), tok, path)


@dataclass
class Leaky:
    """The leaking model, its dataset and guard indexes (forget10 and forget01, lexical)."""

    path: Path
    dataset: Any
    index10: Path
    index01: Path


@pytest.fixture(scope="session")
def leaky(tiny_data, tmp_path_factory) -> Leaky:
    """Trained once per session (seconds)."""
    from unlearn.data import Dataset
    from unlearn.guard.index import build_from_dataset, save_index

    ds = Dataset(tiny_data)
    root = tmp_path_factory.mktemp("serve")
    train_leaky(ds, root / "leaky")
    save_index(build_from_dataset(ds, ["forget10"], embeddings=False), root / "guard10")
    save_index(build_from_dataset(ds, ["forget01"], embeddings=False), root / "guard01")
    return Leaky(root / "leaky", ds, root / "guard10", root / "guard01")


@pytest.fixture(scope="session")
def keys_file(tmp_path_factory) -> Path:
    """A key file holding KEY (and a second key)."""
    path = tmp_path_factory.mktemp("keys") / "api_keys.txt"
    path.write_text(f"# test keys\n{KEY}\nsk-second-key-987654321\n")
    return path
