"""evaluate_shard / merge_shards / retain_reference on nano models that memorized the data.

Forget quality and model utility are recomputed here independently from the raw per-example
statistics (scipy directly, a hand-written harmonic mean).
"""

from __future__ import annotations

import json
import math
import socket

import pytest
from scipy.stats import ks_2samp

from unlearn.data import Dataset, write_dataset
from unlearn.errors import DataError, ModelError
from unlearn.eval import (
    EvalConfig,
    evaluate,
    evaluate_shard,
    merge_shards,
    metrics_document,
    retain_reference,
)
from unlearn.eval import document as eval_document
from unlearn.eval import reference as eval_reference

CFG = EvalConfig(max_new_tokens=24, max_examples_per_split=24, batch_size=16)


@pytest.fixture(scope="module")
def run(trained, tmp_path_factory):
    """The target's shard and metrics, and the retain model's reference shard and reference."""
    cache = str(tmp_path_factory.mktemp("cache"))
    ref_shard = evaluate_shard(
        trained.retain, trained.tokenizer, trained.dataset, CFG, purpose="reference"
    )
    ref = retain_reference(trained.retain, trained.tokenizer, trained.dataset, CFG, cache_dir=cache)
    shard = evaluate_shard(trained.target, trained.tokenizer, trained.dataset, CFG)
    return {
        "shard": shard,
        "ref_shard": ref_shard,
        "ref": ref,
        "cache": cache,
        "metrics": merge_shards([shard], CFG, ref),
    }


def tr(ex, answer_is_correct=False):
    correct = ex["answer"]["avg_nll"] if answer_is_correct else ex["paraphrased"]
    wrong = sum(ex["perturbed"]) / len(ex["perturbed"])
    return math.exp(-wrong) / (math.exp(-correct) + 1e-10)


def test_forget_quality_matches_scipy_on_independently_computed_truth_ratios(run):
    forget = run["shard"]["splits"]["forget10"]["examples"]
    ref = run["ref_shard"]["splits"]["forget10"]["examples"]
    ids = sorted(forget)
    expected = ks_2samp([tr(forget[i]) for i in ids], [tr(ref[i]) for i in ids]).pvalue
    assert run["metrics"]["forget_quality"] == pytest.approx(expected, rel=1e-9)
    assert run["metrics"]["forget_quality_reason"] is None


def test_model_utility_is_the_hand_computed_harmonic_mean(run):
    splits = run["shard"]["splits"]
    retain = list(splits["retain90"]["examples"].values())
    world = list(splits["world_facts"]["examples"].values())
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    values = [
        mean([math.exp(-e["answer"]["avg_nll"]) for e in retain]),
        mean([e["generation"]["rouge_l_recall"] for e in retain]),
        mean([max(0.0, 1 - tr(e)) for e in retain]),
        mean(
            [
                math.exp(-e["answer"]["avg_nll"])
                / (
                    math.exp(-e["answer"]["avg_nll"])
                    + sum(math.exp(-p) for p in e["perturbed"])
                    + 1e-10
                )
                for e in world
            ]
        ),
        mean([e["generation"]["rouge_l_recall"] for e in world]),
        mean([max(0.0, 1 - tr(e, answer_is_correct=True)) for e in world]),
    ]
    m = run["metrics"]
    assert list(m["model_utility_components"].values()) == pytest.approx(values, rel=1e-9)
    if min(values) > 0:
        assert m["model_utility"] == pytest.approx(len(values) / sum(1 / v for v in values))
    else:
        assert m["model_utility"] == 0.0


def test_metric_directions_on_a_memorizing_model(run, trained):
    m = run["metrics"]
    forget = m["splits"]["forget10"]
    assert forget["rouge_l_recall"] >= 0.9
    assert forget["exact_memorization"] > m["splits"]["holdout10"]["exact_memorization"]
    assert m["mia"]["loss"]["auc"] > 0.9  # forget data is far likelier than holdout
    assert m["privleak"] < 0 and m["privleak_reason"] is None
    retain_m = evaluate(trained.retain, trained.tokenizer, trained.dataset, CFG, run["ref"])
    assert retain_m["forget_quality"] == pytest.approx(1.0)
    assert retain_m["privleak"] == pytest.approx(0.0, abs=1e-6)
    assert retain_m["splits"]["forget10"]["rouge_l_recall"] < forget["rouge_l_recall"]


def test_metrics_json_interface(run, trained):
    doc = metrics_document(
        run["metrics"],
        model_path="models/target",
        model_hash="abc",
        dataset=trained.dataset,
        cfg=CFG,
    )
    back = json.loads(eval_document.dumps(doc))
    # shards travel between processes as plain JSON
    assert json.loads(json.dumps(run["shard"], allow_nan=False)) == run["shard"]
    for key in ("forget_quality", "model_utility", "privleak", "splits", "mia", "model", "dataset"):
        assert key in back
    assert back["model"] == {"path": "models/target", "hash": "abc"}
    assert back["dataset"]["hash"] == trained.dataset.hash
    assert back["eval_config"]["forget_split"] == "forget10"
    assert set(back["mia"]) == {"loss", "zlib", "min_k", "min_k_plus_plus"}
    assert all(set(v) == {"auc"} for v in back["mia"].values())
    assert all(isinstance(v, float) for s in back["splits"].values() for v in s.values())
    assert back["examples"] and {"question", "answer", "generation"} <= set(back["examples"][0])
    with pytest.raises(ValueError, match="not finite"):
        eval_document.dumps({"x": float("nan")})


def test_missing_retain_model_gives_null_forget_quality_with_reason(run):
    m = merge_shards([run["shard"]], CFG, None)
    assert m["forget_quality"] is None and "retain model" in m["forget_quality_reason"]
    assert m["privleak"] is None and "retain model" in m["privleak_reason"]
    assert m["model_utility"] == pytest.approx(run["metrics"]["model_utility"])
    # the checkpoint score falls back to the forget truth ratio
    assert "truth_ratio" in m["score_formula"] and m["score"] is not None


def test_two_shards_merge_to_the_single_process_numbers(run, trained):
    shards = [
        evaluate_shard(trained.target, trained.tokenizer, trained.dataset, CFG, r, 2)
        for r in range(2)
    ]
    two = merge_shards(shards, CFG, run["ref"])
    one = run["metrics"]
    for key in ("forget_quality", "model_utility", "privleak", "score"):
        assert two[key] == pytest.approx(one[key], rel=1e-4, abs=1e-7)
    for split, values in one["splits"].items():
        assert two["splits"][split] == pytest.approx(values, rel=1e-4, abs=1e-7)
    assert two["mia"] == one["mia"]
    with pytest.raises(DataError, match="shard is missing"):
        merge_shards(shards[:1], CFG, run["ref"])
    with pytest.raises(DataError, match="two shards"):
        merge_shards([shards[0], shards[0], shards[1]], CFG, run["ref"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_synced_ranks_run_equal_forward_passes(trained, run):
    """ZeRO-3 needs every rank to run the same forward passes: 8 forget rows over 3 ranks."""
    import torch.distributed as dist

    model = trained.target
    counts = {}
    cfg = EvalConfig(max_new_tokens=8, max_examples_per_split=10, batch_size=4)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1
    )
    state = {"in_generate": False, "forwards": 0, "generates": 0}
    original = model.generate

    def counting_generate(*a, **kw):
        assert kw.get("synced_gpus") is True
        state["generates"] += 1
        state["in_generate"] = True
        try:
            return original(*a, **kw)
        finally:
            state["in_generate"] = False

    def hook(*_):
        state["forwards"] += 0 if state["in_generate"] else 1

    handle = model.register_forward_hook(hook)
    model.generate = counting_generate
    try:
        shards = []
        for rank in range(3):
            state.update(forwards=0, generates=0)
            shards.append(
                evaluate_shard(model, trained.tokenizer, trained.dataset, cfg, rank, 3, synced=True)
            )
            counts[rank] = (state["forwards"], state["generates"])
    finally:
        del model.generate
        handle.remove()
        dist.destroy_process_group()
    assert len(set(counts.values())) == 1, counts
    sizes = [len(s["splits"]["forget10"]["examples"]) for s in shards]
    assert sizes == [3, 3, 2]  # dummy examples are dropped from the output
    plain = merge_shards(
        [evaluate_shard(model, trained.tokenizer, trained.dataset, cfg)], cfg, None
    )
    synced = merge_shards(shards, cfg, None)
    for split, values in plain["splits"].items():
        assert synced["splits"][split] == pytest.approx(values, rel=1e-4, abs=1e-7)


@pytest.fixture(scope="module")
def no_perturbed(trained, tmp_path_factory):
    """The tiny dataset with forget10 and world_facts stripped of perturbed answers."""
    ds = trained.dataset
    splits = {}
    for name in ds.splits:
        rows = ds.records(name)
        if name in ("forget10", "world_facts"):
            rows = [{**r, "perturbed_answers": None} for r in rows]
        splits[name] = rows
    path = tmp_path_factory.mktemp("noperturbed") / "ds"
    write_dataset(path, splits, source="test", pairs=ds.info.pairs)
    return Dataset(path)


def test_missing_perturbed_answers_raise_by_default(trained, no_perturbed):
    with pytest.raises(DataError, match=r"forget10.*no perturbed answers.*on_missing_perturbed"):
        evaluate_shard(trained.target, trained.tokenizer, no_perturbed, CFG)


def test_missing_perturbed_answers_skipped_and_marked(trained, no_perturbed, tmp_path):
    cfg = EvalConfig(**{**CFG.__dict__, "on_missing_perturbed": "skip", "generation": False})
    ref = retain_reference(
        trained.retain, trained.tokenizer, no_perturbed, cfg, cache_dir=str(tmp_path)
    )
    m = evaluate(trained.target, trained.tokenizer, no_perturbed, cfg, ref)
    assert "truth_ratio" not in m["splits"]["forget10"]
    assert "probability" not in m["splits"]["world_facts"]
    assert "truth_ratio" in m["splits"]["retain90"]
    assert set(m["skipped"]) == {
        "forget10.truth_ratio",
        "world_facts.truth_ratio",
        "world_facts.probability",
    }
    assert m["forget_quality"] is None and "skipped" in m["forget_quality_reason"]
    assert m["model_utility"] is None and "world_facts.probability" in m["model_utility_reason"]
    assert m["privleak"] is not None  # MIA needs no perturbed answers


def test_retain_reference_is_cached_by_weights(run, trained, monkeypatch):
    def boom(*a, **kw):
        raise AssertionError("the cached reference should have been used")

    monkeypatch.setattr(eval_reference, "evaluate_shard", boom)
    again = retain_reference(
        trained.retain, trained.tokenizer, trained.dataset, CFG, cache_dir=run["cache"]
    )
    assert again == run["ref"]
    with pytest.raises(AssertionError, match="cached"):
        retain_reference(
            trained.retain,
            trained.tokenizer,
            trained.dataset,
            CFG,
            cache_dir=run["cache"],
            weights_hash="other-weights",
        )


def test_reference_of_another_forget_split_is_refused(run, trained, tmp_path):
    other = EvalConfig(**{**CFG.__dict__, "forget_split": "forget01"})
    ref = retain_reference(
        trained.retain, trained.tokenizer, trained.dataset, other, cache_dir=str(tmp_path)
    )
    with pytest.raises(DataError, match="forget01"):
        merge_shards([run["shard"]], CFG, ref)


def test_model_and_tokenizer_vocabulary_mismatch_is_a_clear_error(trained):
    from unlearn.models import build_tiny_model, dataset_texts, train_tokenizer

    small = train_tokenizer(dataset_texts(trained.dataset.records("world_facts")), vocab_size=300)
    model = build_tiny_model(small, "nano", max_positions=128)  # 300-row embedding
    with pytest.raises(ModelError, match="vocabulary"):
        evaluate(model, trained.tokenizer, trained.dataset, CFG)


def test_training_mode_is_restored(trained):
    model = trained.target
    model.train()
    try:
        evaluate_shard(
            model,
            trained.tokenizer,
            trained.dataset,
            EvalConfig(generation=False),
            purpose="reference",
        )
        assert model.training
    finally:
        model.eval()


def test_unknown_split_names_are_reported(trained):
    with pytest.raises(DataError, match="forget_split.*forget42"):
        evaluate_shard(
            trained.target, trained.tokenizer, trained.dataset, EvalConfig(forget_split="forget42")
        )
    with pytest.raises(DataError, match="utility_splits.*real_authors"):
        evaluate_shard(
            trained.target,
            trained.tokenizer,
            trained.dataset,
            EvalConfig(utility_splits=["real_authors"]),
        )


def test_without_a_holdout_split_there_is_no_mia(trained, run, tmp_path):
    ds = trained.dataset
    splits = {n: ds.records(n) for n in ("forget10", "retain90", "world_facts")}
    write_dataset(
        tmp_path / "ds",
        splits,
        source="test",
        pairs={"forget10": {"retain": "retain90", "holdout": None}},
    )
    cfg = EvalConfig(**{**CFG.__dict__, "generation": False})
    m = evaluate(trained.target, trained.tokenizer, Dataset(tmp_path / "ds"), cfg, run["ref"])
    assert m["mia"] == {}
    assert m["privleak"] is None and "holdout" in m["privleak_reason"]
    assert m["forget_quality"] is not None  # the truth ratios need no holdout
