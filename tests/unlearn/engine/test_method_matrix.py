"""Every registered method trains through the engine (a short local run each), and the token
reduction stays exact however a step is split into micro-batches."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from unlearn.config import load_config
from unlearn.data import Dataset
from unlearn.engine import run_dir
from unlearn.engine.config import RunConfig
from unlearn.engine.context import Context
from unlearn.engine.loop import build_streams, data_hashes, token_normalizers, train
from unlearn.engine.session import LocalSession
from unlearn.methods import METHODS, build_method
from unlearn.models import load_model

# per method: extra overrides for a short run on the nano model
EXTRA = {
    "rmu": ["method.layer=1", "method.trainable_layers=[1]", "method.alpha=1"],
    "pdu": ["method.dual_warmup_epochs=0"],
    "undial": ["method.alpha=1"],  # also exercise its optional retain term
    "ssd": ["method.ssd_alpha=1.5"],  # the default 10 selects nothing on this tiny model
}


def run_cfg(data, model, out, *overrides):
    base = [f"data.path={data}", f"model.path={model}", f"output.dir={out}", "data.max_length=64"]
    return load_config(RunConfig, None, base + list(overrides))


@pytest.fixture(scope="module")
def target_model(tiny_data, nano_model_dir, tmp_path_factory):
    """The nano model fine-tuned on forget + retain until it knows the forget answers (a random
    model sits at uniform loss, where nothing can be unlearned)."""
    root = tmp_path_factory.mktemp("target")
    cfg = run_cfg(
        tiny_data, nano_model_dir, root / "run", "method.name=finetune", "backend.kind=torch",
        "data.train_splits=[forget10,retain90]", "train.epochs=8", "train.lr=1e-2",
        "train.batch_size=16", "train.micro_batch_size=16", "train.warmup_epochs=0",
    )  # fmt: skip
    run_dir.prepare(cfg, data_hashes(cfg, Dataset(tiny_data)))
    summary = train(cfg, LocalSession(root / "ckpt"))
    assert summary["loss_after"]["train_nll"] < 0.6 * summary["loss_before"]["train_nll"]
    return root / "run" / "model"


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_trains_through_the_engine(name, tiny_data, target_model, tmp_path):
    nano_model_dir = target_model
    out = tmp_path / name
    extra = ["data.train_splits=[forget10]"] if name == "finetune" else []
    cfg = run_cfg(
        tiny_data, nano_model_dir, out, f"method.name={name}", "backend.kind=torch",
        "train.epochs=2", "train.lr=5e-3", "train.batch_size=4", "train.micro_batch_size=2",
        "train.warmup_epochs=0", "train.schedule=constant", *extra, *EXTRA.get(name, []),
    )  # fmt: skip
    run_dir.prepare(cfg, data_hashes(cfg, Dataset(tiny_data)))
    summary = train(cfg, LocalSession(tmp_path / "ckpt"))
    assert summary["status"] == "finished" and summary["method"] == name
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "step" in r]
    assert steps and all(
        v == v and abs(v) < 1e6 for r in steps for v in r.values() if isinstance(v, float)
    )  # finite logged terms
    before, after = summary["loss_before"], summary["loss_after"]
    if name == "finetune":
        assert after["train_nll"] < before["train_nll"]
    else:
        assert after["forget_nll"] > before["forget_nll"]  # every method forgets something
    if name == "pdu":
        state = json.loads(next((tmp_path / "ckpt").rglob("trainer_state.json")).read_text())
        assert state["method"]["eps"] == pytest.approx(before["retain_nll"])
        assert [r["retain_weight"] for r in steps][0] == 1.0  # lambda starts at alpha


def test_token_mean_is_exact_across_micro_batches(tiny_data, nano_model_dir, tmp_path):
    """One micro-batch of 4 rows and two of 2 (accumulated as the backend does) give the same
    token-mean loss and gradient: the normalizer counts the whole step's tokens."""
    cfg = run_cfg(tiny_data, nano_model_dir, tmp_path / "o", "method.name=graddiff",
                  "method.nll_reduction=token")  # fmt: skip
    method = build_method(cfg.method)
    model, tok = load_model(nano_model_dir)
    streams = build_streams(cfg, method.streams, Dataset(tiny_data), tok)
    picks = {"forget": [0, 3, 5, 6], "retain": [1, 9, 20, 33]}
    session = SimpleNamespace(world_size=1, device=torch.device("cpu"))

    def grads(split: int) -> tuple[float, list[torch.Tensor]]:
        model.zero_grad()
        step = [
            {n: [streams[n][i] for i in idx[k : k + split]] for n, idx in picks.items()}
            for k in range(0, 4, split)
        ]
        norm = token_normalizers(method, step, session)
        total = 0.0
        for rows in step:
            ctx = Context.from_streams(model, rows, tok.pad_token_id, token_normalizers=norm)
            loss = method.compute(ctx).loss / len(step)  # the backend's 1 / accumulation
            loss.backward()
            total += float(loss.detach())
        return total, [p.grad.clone() for p in model.parameters()]

    whole, g1 = grads(4)
    halves, g2 = grads(2)
    assert halves == pytest.approx(whole, abs=1e-5)  # a difference of two ~6 terms
    assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-7) for a, b in zip(g1, g2))
    # and differs from the per-example form (answers have different lengths)
    lengths = {len([y for y in streams["forget"][i].labels if y != -100]) for i in picks["forget"]}
    assert len(lengths) > 1
