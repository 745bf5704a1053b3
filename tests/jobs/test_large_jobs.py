"""A ~30M-parameter Llama from sharded safetensors under ZeRO-3 on 2 Ray workers: each rank holds
half the parameters and never the whole model (measured in run.json's ``memory``)."""

from __future__ import annotations

import json

import pytest

from tests.jobs.test_train_jobs import cfg_for
from unlearn.models import sharded

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def llama30m(tiny_data, tmp_path_factory):
    """A 31.6M-parameter Llama (hidden 512, 10 layers) saved as 40 MB safetensors shards."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from unlearn.data import Dataset
    from unlearn.models import dataset_texts, train_tokenizer
    from unlearn.models.io import weights_hash, write_manifest

    ds = Dataset(tiny_data)
    tok = train_tokenizer(dataset_texts([r for s in ds.splits for r in ds.records(s)]), 512)
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=512, intermediate_size=1408, num_hidden_layers=10,
        num_attention_heads=8, num_key_value_heads=8, max_position_embeddings=128,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id, tie_word_embeddings=False,
    )  # fmt: skip
    model = LlamaForCausalLM(config)
    path = tmp_path_factory.mktemp("models") / "llama30m"
    model.save_pretrained(path, max_shard_size="40MB")
    tok.save_pretrained(path)
    write_manifest(path, weights_hash(path), {"built_by": "test"})
    assert (path / sharded.INDEX).is_file()
    return path, sum(p.numel() for p in model.parameters())


def test_zero3_ranks_hold_half_the_model_and_never_all_of_it(
    ray_local, tiny_data, llama30m, tmp_path
):
    from jobs.common import run_training

    path, n_params = llama30m
    assert 25e6 < n_params < 60e6
    out = tmp_path / "run"
    cfg = cfg_for(
        tiny_data, path, out, "train.epochs=1", "data.max_length=32",
        "output.max_shard_size=40MB",
    )  # fmt: skip
    summary = run_training(cfg, show_progress=False)
    assert summary["status"] == "finished" and summary["zero_stage"] == 3
    ranks = summary["memory"]["ranks"]
    assert len(ranks) == 2
    full_fp32 = n_params * 4
    for r in ranks:
        load = r["load"]
        assert load["parameter_bytes_full"] == full_fp32
        # each rank's partitions: half the model (+ DeepSpeed's alignment padding)
        assert load["parameter_bytes_resident"] == pytest.approx(full_fp32 / 2, rel=0.02), load
        # building and reading the model never held the whole fp32 model in this process
        # (measured: 112 MB peak for the 131 MB model, half of it the rank's partitions)
        assert load["peak_rss_above_baseline"] < full_fp32, load
    # the export streamed one gathered parameter at a time into a sharded, loadable model
    index = json.loads((out / "model" / sharded.INDEX).read_text())
    assert index["metadata"]["total_size"] == full_fp32
    from transformers import AutoModelForCausalLM

    trained = AutoModelForCausalLM.from_pretrained(out / "model")
    assert sum(p.numel() for p in trained.parameters()) == n_params
