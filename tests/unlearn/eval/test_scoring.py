"""Batched teacher-forced scoring and batched generation agree with one-at-a-time computation."""

from __future__ import annotations

import pytest
import torch

from unlearn.errors import DataError, ModelError
from unlearn.eval import scoring
from unlearn.eval.metrics import FORWARD_ATTACKS
from unlearn.models import IGNORE_INDEX, build_tiny_model, encode_prompt, encode_qa

ATTACKS = {n: m.attack for n, m in FORWARD_ATTACKS.items()}  # computed while scoring


def items_of(trained, n=6):
    rows = trained.dataset.records("forget10")[:n]
    return [scoring.ScoreItem(r["question"], r["answer"], full=True) for r in rows] + [
        scoring.ScoreItem(r["question"], r["perturbed_answers"][0]) for r in rows
    ]


def test_score_matches_a_direct_forward_pass(trained):
    tok, model = trained.tokenizer, trained.target
    r = trained.dataset.records("forget10")[0]
    (out,) = scoring.score(
        model,
        tok,
        [scoring.ScoreItem(r["question"], r["answer"], full=True)],
        batch_size=4,
        max_length=96,
        attacks=ATTACKS,
    )
    enc = encode_qa(tok, r["question"], r["answer"], 96)
    ids = torch.tensor([enc["input_ids"]])
    labels = torch.tensor(enc["labels"][1:])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, :-1]
    keep = labels != IGNORE_INDEX
    nll = torch.nn.functional.cross_entropy(logits[keep], labels[keep])
    assert out["avg_nll"] == pytest.approx(nll.item(), abs=1e-5)
    assert out["n"] == int(keep.sum())
    preds = logits[keep].argmax(-1)[:-1]  # EOS excluded
    assert out["em"] == pytest.approx((preds == labels[keep][:-1]).float().mean().item())
    assert set(out["mia"]) == set(ATTACKS)
    assert out["mia"]["loss"] == pytest.approx(out["avg_nll"])


def test_batched_scoring_equals_one_at_a_time(trained):
    items = items_of(trained)
    kw = dict(max_length=96, attacks=ATTACKS)
    batched = scoring.score(trained.target, trained.tokenizer, items, batch_size=8, **kw)
    single = scoring.score(trained.target, trained.tokenizer, items, batch_size=1, **kw)
    for b, s in zip(batched, single):
        assert b["avg_nll"] == pytest.approx(s["avg_nll"], abs=1e-5)
        for name in b.get("mia", {}):
            assert b["mia"][name] == pytest.approx(s["mia"][name], abs=1e-4)


def test_batched_generation_equals_one_at_a_time(trained):
    tok = trained.tokenizer
    rows = trained.dataset.records("retain90")[:7]
    prompts = [encode_prompt(tok, r["question"]) for r in rows]
    batched = scoring.generate(trained.target, tok, prompts, batch_size=4, max_new_tokens=20)
    single = scoring.generate(trained.target, tok, prompts, batch_size=1, max_new_tokens=20)
    assert batched == single
    assert batched[0] == rows[0]["answer"]  # the target memorized its training data


def test_padding_batches_run_extra_forward_passes(trained):
    calls = []
    handle = trained.target.register_forward_hook(lambda *a: calls.append(1))
    try:
        items = items_of(trained, 3)  # 6 items -> 2 batches of 4
        out = scoring.score(
            trained.target, trained.tokenizer, items, batch_size=4, max_length=96, n_batches=5
        )
    finally:
        handle.remove()
    assert len(calls) == 5 and len(out) == 6 and all(o is not None for o in out)
    with pytest.raises(ValueError, match="less than"):
        scoring.score(
            trained.target, trained.tokenizer, items, batch_size=4, max_length=96, n_batches=1
        )


def test_tokenizer_larger_than_model_vocabulary_is_refused(trained):
    from unlearn.models import dataset_texts, train_tokenizer

    texts = dataset_texts(trained.dataset.records("full"))
    other = train_tokenizer(texts, vocab_size=1024)  # ids up to ~1000; the model has 512 rows
    model = build_tiny_model(trained.tokenizer, "nano", max_positions=128)
    enc = scoring.encode_items(other, [scoring.ScoreItem("Who is Ann?", "Ann is a poet.")], 64)
    with pytest.raises(ModelError, match="does not belong to this model"):
        scoring.check_vocabulary(model, other, [e["input_ids"] for e in enc])


def test_tokenizer_that_does_not_cover_the_text_is_refused():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<pad>": 1, "<s>": 2, "</s>": 3, "Question": 4, "Answer": 5}
    raw = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        unk_token="<unk>",
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
    )
    model = build_tiny_model(tok, "nano", max_positions=64)
    enc = scoring.encode_items(tok, [scoring.ScoreItem("Where was Ann born?", "In Oslo.")], 64)
    with pytest.raises(DataError, match="unknown token"):
        scoring.check_vocabulary(model, tok, [e["input_ids"] for e in enc])
