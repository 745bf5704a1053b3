"""Large-model levers on real parts: gradient checkpointing, LoRA (peft), the adapters-disabled
reference, and the sharded export through a real S3 server (moto on 127.0.0.1)."""

from __future__ import annotations

import json

import pytest
import torch

from unlearn import storage
from unlearn.config import load_config
from unlearn.data import Dataset
from unlearn.engine import modeling, run_dir
from unlearn.engine.backend import make_optimizer
from unlearn.engine.config import RunConfig
from unlearn.engine.loop import data_hashes, train
from unlearn.engine.session import LocalSession
from unlearn.models import sharded


def cfg_of(data, model, out, *overrides) -> RunConfig:
    base = [
        f"data.path={data}",
        f"model.path={model}",
        f"output.dir={out}",
        "data.max_length=64",
        "method.name=npo",
        "backend.kind=torch",
        "train.lr=1e-3",
        "train.batch_size=4",
        "train.micro_batch_size=2",
    ]
    return load_config(RunConfig, None, base + list(overrides))


def base(model_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir).eval()


def batch(vocab: int, rows: int = 2, length: int = 24, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (rows, length), generator=g)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}


# Recomputation replays the same float operations in the same order, so CPU results agree to a
# few ulps; 1e-5 relative leaves room for other BLAS builds.
CKPT_RTOL = 1e-5


def test_gradient_checkpointing_gives_the_same_loss_and_gradients(
    tiny_data, nano_model_dir, tmp_path
):
    results = {}
    for on in (False, True):
        cfg = cfg_of(tiny_data, nano_model_dir, tmp_path, f"train.gradient_checkpointing={on}")
        model = modeling.adapt(base(nano_model_dir).train(), cfg)
        assert model.is_gradient_checkpointing == on
        out = model(**batch(model.config.vocab_size))
        out.loss.backward()
        results[on] = (out.loss.item(), {n: p.grad.clone() for n, p in model.named_parameters()})
    assert results[True][0] == pytest.approx(results[False][0], rel=CKPT_RTOL)
    for name, g in results[False][1].items():
        torch.testing.assert_close(results[True][1][name], g, rtol=CKPT_RTOL, atol=1e-7)


PEAK_SCRIPT = """
import json, sys, torch
from transformers import LlamaConfig, LlamaForCausalLM
from unlearn.engine import memory
config = LlamaConfig(vocab_size=512, hidden_size=128, intermediate_size=512, num_hidden_layers=12,
                     num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=1024)
torch.manual_seed(0)
model = LlamaForCausalLM(config).train()
if sys.argv[1] == "on":
    model.gradient_checkpointing_enable({"use_reentrant": False})
ids = torch.randint(3, 512, (4, 1024))
model(input_ids=ids[:, :32], labels=ids[:, :32]).loss.backward()  # warm-up: one-time buffers
model.zero_grad(set_to_none=True)
probe = memory.Probe()
model(input_ids=ids, labels=ids).loss.backward()
print(json.dumps(probe.sample()["peak_rss_above_baseline"]))
"""


@pytest.mark.slow
def test_gradient_checkpointing_lowers_peak_memory_at_long_sequences():
    """Peak resident memory of one forward + backward over 4 x 1024 tokens, measured (RSS), each
    setting in a fresh process (a process reuses freed pages, which would hide the difference)."""
    import os
    import subprocess
    import sys

    peaks = {}
    for on in ("on", "off"):
        proc = subprocess.run(
            [sys.executable, "-c", PEAK_SCRIPT, on], capture_output=True, text=True,
            env=dict(os.environ), check=True, timeout=600,
        )  # fmt: skip
        peaks[on] = int(proc.stdout.strip().splitlines()[-1])
    # 12 layers' intermediates (~4 x 1024 x (10 x 128 + 4 x 512) x 4 B = 55 MB/layer) vs one
    # layer input per layer plus one layer recomputed (whose attention transients, [4, 4, 1024,
    # 1024] fp32 on CPU, dominate)
    assert peaks["on"] < 0.7 * peaks["off"], peaks


def test_lora_trains_only_adapters_and_the_merged_export_matches_peft(
    tiny_data, nano_model_dir, tmp_path
):
    cfg = cfg_of(
        tiny_data, nano_model_dir, tmp_path / "run", "model.lora.r=4", "model.lora.alpha=8",
        "output.max_shard_size=60KB",
    )  # fmt: skip
    model = modeling.adapt(base(nano_model_dir).train(), cfg)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_" in n for n in trainable)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = make_optimizer(model, cfg)
    for step in range(3):
        model(**batch(model.config.vocab_size, seed=step)).loss.backward()
        opt.step()
        opt.zero_grad()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all(".lora_" in n for n in changed)
    assert any("lora_B" in n for n in changed)  # B starts at 0: the update is no longer zero

    model.eval()
    probe = batch(model.config.vocab_size, seed=99)
    del probe["labels"]
    with torch.no_grad():
        peft_logits = model(**probe).logits
        base_logits = base(nano_model_dir)(**probe).logits
    # the adapters-disabled reference is the starting model, without a second copy
    ref_logits = modeling.AdaptersDisabled(model)(**probe).logits
    torch.testing.assert_close(ref_logits, base_logits, rtol=0, atol=1e-6)
    assert (peft_logits - base_logits).abs().max() > 1e-4  # the adapters do change the model

    dest = tmp_path / "merged"
    tok = modeling.load_tokenizer(nano_model_dir)
    digest = modeling.export(cfg, model, tok, str(dest), rank=0)
    index = json.loads((dest / sharded.INDEX).read_text())
    assert len(set(index["weight_map"].values())) > 1  # sharded at 60KB
    with torch.no_grad():
        merged_logits = base(dest)(**probe).logits  # plain AutoModelForCausalLM
    torch.testing.assert_close(merged_logits, peft_logits, rtol=1e-5, atol=1e-5)
    manifest = json.loads((dest / "unlearn_model.json").read_text())
    assert manifest["weights_sha256"] == digest and manifest["lora"]["r"] == 4

    # the adapter-directory export loads with peft over the base model
    from peft import PeftModel

    cfg.model.lora.export = "adapter"
    modeling.export(cfg, model, tok, str(tmp_path / "adapter"), rank=0)
    reloaded = PeftModel.from_pretrained(base(nano_model_dir), str(tmp_path / "adapter")).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**probe).logits, peft_logits, rtol=1e-5, atol=1e-5)


def test_lora_without_trainable_targets_is_refused(tiny_data, nano_model_dir, tmp_path):
    from unlearn.errors import ConfigError

    cfg = cfg_of(tiny_data, nano_model_dir, tmp_path, "model.lora.target_modules=[no_such]")
    with pytest.raises(ConfigError, match="none exists in the model"):
        modeling.adapt(base(nano_model_dir), cfg)


@pytest.mark.slow
def test_npo_kl_with_lora_runs_through_the_engine(tiny_data, nano_model_dir, tmp_path):
    """NPO with a KL retain term: the online reference is the adapters-disabled model."""
    out = tmp_path / "run"
    cfg = cfg_of(
        tiny_data, nano_model_dir, out, "method.name=npo", "method.retain_loss=kl",
        "model.lora.r=8", "model.lora.alpha=16", "train.epochs=3", "train.lr=1e-2",
    )  # fmt: skip
    run_dir.prepare(cfg, data_hashes(cfg, Dataset(tiny_data)))
    summary = train(cfg, LocalSession(tmp_path / "ckpt"))
    assert summary["loss_after"]["forget_nll"] > summary["loss_before"]["forget_nll"] + 0.1
    trained = base(out / "model")
    start = base(nano_model_dir)
    for name, p in start.named_parameters():
        w = trained.get_parameter(name)
        if "_proj" in name:  # LoRA targets: merged adapters changed them
            continue
        assert torch.equal(w, p), name  # untargeted weights (norms, embeddings) never change
    assert summary["memory"]["ranks"][0]["load"]["parameter_bytes_full"] > 0


def test_sharded_export_round_trips_through_s3(tiny_data, nano_model_dir, s3_bucket, tmp_path):
    from transformers import AutoModelForCausalLM

    dest = f"{s3_bucket}/exported"
    cfg = cfg_of(tiny_data, nano_model_dir, tmp_path / "run", "output.max_shard_size=50KB")
    model = base(nano_model_dir)
    tok = modeling.load_tokenizer(nano_model_dir)
    digest = modeling.export(cfg, model, tok, dest, rank=0, metadata={"note": "round trip"})
    fs, inner = storage.filesystem(dest)
    names = {p.rsplit("/", 1)[-1] for p in fs.ls(inner)}
    shards = {n for n in names if n.startswith("model-") and n.endswith(".safetensors")}
    assert len(shards) > 2 and sharded.INDEX in names and "config.json" in names
    local = sharded.local_model_dir(dest, root=tmp_path / "cache")  # the node-local cache
    assert local.name == digest  # keyed by the weights hash
    assert sharded.local_model_dir(dest, root=tmp_path / "cache") == local  # downloaded once
    loaded = AutoModelForCausalLM.from_pretrained(str(local))
    ours = model.state_dict()
    for name, t in loaded.state_dict().items():
        assert torch.equal(t, ours[name]), name
    # each tensor's byte range reads back exactly, as ZeRO-3 ranks read their partitions
    ckpt = sharded.Checkpoint(local)
    w = ours["model.layers.0.mlp.down_proj.weight"].flatten()
    torch.testing.assert_close(
        ckpt.read("model.layers.0.mlp.down_proj.weight", 100, 333), w[100:433], rtol=0, atol=0
    )
