"""MUSE import of a hand-written fixture in MUSE's layout, and MUSE's metrics on it: KnowMem with
in-context examples and stop strings, VerbMem on prompt / continuation pairs, privleak with
Min-K%++ on the passages (one process; the Ray job runs the same shards)."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
import torch

from cli import main
from unlearn.data import Dataset, write_dataset
from unlearn.data.muse import import_muse
from unlearn.errors import DataError
from unlearn.eval import EvalConfig, evaluate, retain_reference
from unlearn.eval.muse import cut_at_stop
from unlearn.eval.presets import load_preset

FIXTURE = Path(__file__).resolve().parent / "muse_shaped"


def test_import_muse_layout(tmp_path, capsys):
    out = tmp_path / "ds"
    assert main(["data", "import", "--format", "muse", str(FIXTURE), "--out", str(out)]) == 0
    ds = Dataset(out)
    assert set(ds.splits) == {
        "forget", "retain1", "retain2", "holdout",
        "knowmem_forget_qa", "knowmem_retain_qa", "knowmem_forget_qa_icl", "knowmem_retain_qa_icl",
        "verbmem_forget", "privleak_forget", "privleak_retain", "privleak_holdout",
    }  # fmt: skip
    assert ds.info.pairs == {"forget": {"retain": "retain1", "holdout": "holdout"}}
    assert ds.info.source == "muse"
    forget = ds.records("forget")
    assert len(forget) == 4 and forget[0]["question"] == "" and "Quay Street" in forget[0]["answer"]
    assert ds.records("retain2")[2]["answer"].startswith("A colony of grey seals")  # JSON lines
    vm = ds.records("verbmem_forget")[0]
    raw = json.loads((FIXTURE / "verbmem" / "forget.json").read_text())[0]
    assert (vm["question"], vm["answer"]) == (raw["prompt"], raw["gt"])
    qa = ds.records("knowmem_forget_qa")[3]
    assert (qa["question"], qa["answer"]) == (
        "What is the name of the comet catalogued at the Pellmoor observatory?", "Pellmoor-3",
    )  # fmt: skip


def test_missing_or_malformed_muse_files_are_named(tmp_path):
    src = tmp_path / "muse"
    shutil.copytree(FIXTURE, src)
    (src / "verbmem" / "forget.json").unlink()
    with pytest.raises(DataError, match=r"split 'verbmem_forget' is missing \(looked for verbmem/"):
        import_muse(src)
    shutil.copy(FIXTURE / "verbmem" / "forget.json", src / "verbmem" / "forget.json")
    (src / "knowmem" / "retain_qa.json").write_text(json.dumps([{"question": "Q?", "gt": "x"}]))
    with pytest.raises(DataError, match=r"retain_qa\.json:0: expected an object with string"):
        import_muse(src)
    (src / "knowmem" / "retain_qa.json").write_text(json.dumps([{"question": "Q?", "answer": "x"}]))
    (src / "raw" / "forget.json").write_text(json.dumps(["", "text"]))
    with pytest.raises(DataError, match=r"forget\.json:0: a passage must be a non-empty string"):
        import_muse(src)


def test_a_txt_document_is_cut_into_passages(tmp_path):
    src = tmp_path / "muse"
    shutil.copytree(FIXTURE, src)
    (src / "raw" / "forget.json").unlink()
    paragraphs = [f"Paragraph {i} " + "word " * 120 for i in range(40)]
    (src / "raw" / "forget.txt").write_text("\n\n".join(paragraphs))
    splits, _ = import_muse(src)
    passages = [r["answer"] for r in splits["forget"]]
    assert 1 < len(passages) < 40 and all(len(p) <= 2000 + 700 for p in passages)
    assert "\n\n".join(passages) == "\n\n".join(p.strip() for p in paragraphs)  # nothing lost


def test_stop_strings_cut_knowmem_answers():
    assert cut_at_stop(" Pellmoor-3\n\nQuestion: next", ["\n\n", "\nQuestion", "Question:"]) == (
        "Pellmoor-3"
    )
    assert cut_at_stop("twelve percent\nQuestion: x", ["\n\n", "\nQuestion"]) == "twelve percent"


def _memorize(tok, texts: list[str], steps: int, seed: int):
    """A nano Llama trained on plain-text rows (the forget corpus)."""
    from unlearn.models import build_tiny_model
    from unlearn.models.batching import pad_right
    from unlearn.models.prompting import encode_text

    torch.manual_seed(seed)
    model = build_tiny_model(tok, "nano", max_positions=256, seed=seed)
    enc = [encode_text(tok, t, 200) for t in texts]
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3)
    rng = random.Random(seed)
    for _ in range(steps):
        batch = rng.sample(enc, min(8, len(enc)))
        b = pad_right([e["input_ids"] for e in batch], [e["labels"] for e in batch], 0)
        model(
            input_ids=b["input_ids"], attention_mask=b["attention_mask"], labels=b["labels"]
        ).loss.backward()
        opt.step()
        opt.zero_grad()
    return model.eval()


@pytest.fixture(scope="module")
def muse(tmp_path_factory):
    from unlearn.models import dataset_texts, train_tokenizer

    out = tmp_path_factory.mktemp("muse") / "ds"
    splits, pairs = import_muse(FIXTURE)
    write_dataset(out, splits, source="muse", pairs=pairs)
    ds = Dataset(out)
    tok = train_tokenizer(dataset_texts(r for s in ds.splits for r in ds.records(s)), 600)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        corpus = [r["answer"] for r in ds.records("forget") + ds.records("retain1")]
        target = _memorize(tok, corpus, steps=150, seed=0)
        retain = _memorize(tok, [r["answer"] for r in ds.records("retain1")], steps=150, seed=1)
    finally:
        torch.set_num_threads(before)
    return ds, tok, target, retain


def test_muse_metrics_as_muse_defines_them(muse):
    ds, tok, target, retain = muse
    cfg = EvalConfig(**{**load_preset("muse"), "max_length": 256, "batch_size": 8,
                        "verbmem_max_new_tokens": 48})  # fmt: skip
    assert (cfg.suite, cfg.privleak_attack, cfg.knowmem_max_new_tokens) == (
        "muse", "min_k_plus_plus", 32,
    )  # fmt: skip
    ref = retain_reference(retain, tok, ds, cfg, use_cache=False)
    m = evaluate(target, tok, ds, cfg, ref)
    assert m["suite"] == "muse"
    assert m["roles"] == {
        "privleak_forget": "forget", "privleak_retain": "retain", "privleak_holdout": "holdout",
        "knowmem_forget_qa": "knowmem_forget", "knowmem_retain_qa": "knowmem_retain",
        "verbmem_forget": "verbmem",
    }  # fmt: skip
    know_f = m["splits"]["knowmem_forget_qa"]["muse_knowmem"]
    know_r = m["splits"]["knowmem_retain_qa"]["muse_knowmem"]
    verb = m["splits"]["verbmem_forget"]["muse_verbmem"]
    assert all(0.0 <= v <= 1.0 for v in (know_f, know_r, verb))
    assert m["model_utility"] == know_r  # MUSE's utility: KnowMem on retain
    assert m["forget_quality"] is None and "MUSE defines no" in m["forget_quality_reason"]
    # the target memorized the forget passages: it continues the VerbMem prompts far better than
    # the retain model, and Min-K%++ separates forget passages from holdout ones
    retain_m = evaluate(retain, tok, ds, cfg, ref)
    assert verb > retain_m["splits"]["verbmem_forget"]["muse_verbmem"] + 0.2
    assert m["mia"]["min_k_plus_plus"]["auc"] > retain_m["mia"]["min_k_plus_plus"]["auc"]
    assert m["privleak"] < retain_m["privleak"] == pytest.approx(0.0, abs=1e-6)
    assert m["privleak_reference"] == "retain model"
    assert m["splits"]["privleak_forget"]["extraction_strength"] > 0
    # KnowMem prompts carry the in-context examples; answers stop at the stop strings
    ex = next(e for e in m["examples"] if e["role"] == "knowmem_forget")
    assert "\n\n" not in ex["generation"] and "Question:" not in ex["generation"]
    json.dumps(m, allow_nan=False)
