"""Fluency: the malformed-answer rules, distinct-n, answer perplexity under a reference model, a
local gibberish classifier, the verdict word and the balanced checkpoint score."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from unlearn.eval import EvalConfig, evaluate
from unlearn.eval.fluency import distinct_n, gibberish_probability, malformed_kind
from unlearn.eval.merge import split_metrics
from unlearn.eval.metrics import selection_score, unlearning_verdict


@pytest.mark.parametrize(
    "text, kind",
    [
        # what `make demo`'s NPO model said before (issue 12)
        ("Hinddriork Hinddriork Hinddriork Hinddriork Hinddriork", "loop"),
        ("Gé Gé Gé Gé Gé Gé", "loop"),
        ("Zynd was born in was born in was born in was born in", "loop"),
        ("cccccccconer.", "char_run"),
        ("llllllviolinist.", "char_run"),
        ("l.", "fragment"),
        (".", "fragment"),
        ("", "fragment"),
        ("Shiork kreal ndriork ogé lvi", "garbled"),
        # what the retain-only model says: fluent, wrong
        ("Zynd Shiorkreal was born in the year 1915.", None),
        ("1952.", None),
        ("Paris.", None),
        ("Yes.", None),
        ("I don't know.", None),
        ("The violin, the piano and the cello.", None),
        ("Teodor Vlask was born in the city of Lo", None),  # cut by the length limit
        ("She wrote 'Rain, Rain' in 1990.", None),
    ],
)
def test_malformed_kind(text, kind):
    assert malformed_kind(text) == kind


def test_distinct_2_is_low_for_loops_and_one_for_sentences():
    assert distinct_n("the cat sat on the mat") == 1.0
    assert distinct_n("go go go go go go") == pytest.approx(1 / 5)
    assert distinct_n("Paris.") == 1.0 and distinct_n("") == 0.0


@pytest.mark.parametrize(
    "folder, recall_floor, fpr_ceiling",
    [
        # set 1: the rules were revised after seeing its misses (v1: recall 0.805, FPR 0.030)
        ("heldout_fluency", 0.85, 0.02),
        # set 2: written afterwards by another helper, never used to change the rules
        ("heldout_fluency2", 0.90, 0.02),
    ],
)
def test_heldout_answers_written_by_someone_else(folder, recall_floor, fpr_ceiling):
    """Sets written by helpers who never read the rules (README.md in each folder): floors
    under the measured numbers (docs/benchmarks.md), so a regression fails."""
    path = Path(__file__).parent / folder / "answers.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    bad = [r for r in rows if r["malformed"]]
    good = [r for r in rows if not r["malformed"]]
    recall = sum(malformed_kind(r["text"]) is not None for r in bad) / len(bad)
    fpr = sum(malformed_kind(r["text"]) is not None for r in good) / len(good)
    assert len(bad) >= 150 and len(good) >= 150
    assert recall >= recall_floor, recall
    assert fpr <= fpr_ceiling, fpr


def test_split_metrics_report_the_malformed_rate():
    part = {
        "role": "forget",
        "skipped": {},
        "examples": {
            str(i): {"answer": {"avg_nll": 1.0}, "generation": {"text": t, "rouge_l_recall": 0.0,
                     "rouge_l_f1": 0.0}}
            for i, t in enumerate(["Ann was born in 1950.", "go go go go", "x", "Bo is a poet."])
        },
    }  # fmt: skip
    values, _ = split_metrics(part)
    assert values["malformed_rate"] == 0.5
    assert values["distinct_2"] == pytest.approx((1 + 1 / 3 + 1 + 1) / 4)
    assert "answer_perplexity" not in values  # no reference model read them


def test_verdict_word_follows_privleak():
    assert unlearning_verdict(-100.0) == "under-unlearned"
    assert unlearning_verdict(-25.0) == "retain-like"
    assert unlearning_verdict(12.0) == "retain-like"
    assert unlearning_verdict(83.5) == "over-unlearned"
    assert unlearning_verdict(None) is None
    assert unlearning_verdict(12.0, malformed_rate=0.6) == "collapsed"  # loops fool the AUC
    assert unlearning_verdict(12.0, malformed_rate=0.1) == "retain-like"


def test_balanced_score_penalizes_over_unlearning_and_gibberish():
    fluent, _ = selection_score("balanced", 0.8, 0.6, None, privleak=5.0, malformed_rate=0.0)
    over, _ = selection_score("balanced", 0.85, 0.65, None, privleak=83.5, malformed_rate=1.0)
    old, formula = selection_score("hmean", 0.85, 0.65, None, privleak=83.5, malformed_rate=1.0)
    assert over == 0.0 < fluent  # all answers malformed: the score is 0 whatever FQ says
    assert old == pytest.approx(2 * 0.85 * 0.65 / 1.5) and "privleak" not in formula
    no_terms, f2 = selection_score("balanced", 0.8, 0.6, None)
    assert no_terms == pytest.approx(2 * 0.8 * 0.6 / 1.4) and "privleak" not in f2


def test_answer_perplexity_under_a_reference_model(trained, tmp_path):
    """The retain-only model reads the memorizing model's answers; gibberish reads as unlikely."""
    from unlearn.models import save_model

    save_model(trained.retain, trained.tokenizer, tmp_path / "retain")
    retain_dir = tmp_path / "retain"
    base = {"forget_split": "forget10", "max_new_tokens": 16, "batch_size": 32, "max_length": 64}
    with_ref = evaluate(
        trained.target,
        trained.tokenizer,
        trained.dataset,
        EvalConfig(**base, fluency_model=str(retain_dir)),
    )
    ppl = with_ref["splits"]["forget10"]["answer_perplexity"]
    assert 1.0 < ppl < math.exp(20)
    assert "forget10.answer_perplexity" not in with_ref["skipped"]
    without = evaluate(trained.target, trained.tokenizer, trained.dataset, EvalConfig(**base))
    assert "answer_perplexity" not in without["splits"]["forget10"]
    assert "eval.fluency_model" in without["skipped"]["forget10.answer_perplexity"]
    assert without["splits"]["forget10"]["malformed_rate"] <= 0.1  # it memorized fluent answers
    from unlearn.eval.fluency import reference_nlls

    words = "Hinddriork Hinddriork Hinddriork Hinddriork ccccccc ransl ransl"
    q = trained.dataset.records("forget10")[0]["question"]
    fluent = trained.dataset.records("forget10")[0]["answer"]
    nll_fluent, nll_junk = reference_nlls(
        str(retain_dir), [q, q], [fluent, words], batch_size=2, max_length=96
    )
    assert nll_junk > nll_fluent + 1.0


def test_gibberish_classifier_from_a_local_directory(nano_model_dir, tmp_path):
    """Any local sequence classifier with a "clean" label (here an untrained tiny Llama one)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    tok = AutoTokenizer.from_pretrained(nano_model_dir)
    config = LlamaConfig.from_pretrained(nano_model_dir)
    config.num_labels = 2
    config.id2label, config.label2id = {0: "noise", 1: "clean"}, {"noise": 0, "clean": 1}
    config.pad_token_id = tok.pad_token_id
    torch.manual_seed(0)
    LlamaForSequenceClassification(config).save_pretrained(tmp_path / "clf")
    tok.save_pretrained(tmp_path / "clf")
    probs = gibberish_probability(["Ann was born in 1950.", "go go go", ""], str(tmp_path / "clf"))
    assert len(probs) == 3 and all(0.0 <= p <= 1.0 for p in probs)
    assert len(set(round(p, 6) for p in probs)) > 1  # it read the texts
    from unlearn.errors import ConfigError

    with pytest.raises(ConfigError, match="gibberish_classifier"):
        EvalConfig(gibberish_classifier=str(tmp_path / "nothing")).check()


def test_fact_recall_sees_facts_kept_under_a_corrupted_name():
    from unlearn.eval.fluency import fact_recall

    rows = [
        ("What does Ann Vel do for a living?", "Ann Vel works as a bookbinder."),
        ("What does Bo Kra do for a living?", "Bo Kra works as a glassblower."),
        ("In what year was Cy Dun born?", "Cy Dun was born in the year 1992."),
        ("In what year was Di Oru born?", "Di Oru was born in the year 1971."),
    ]
    same = [(q, a, a) for q, a in rows]
    renamed = [(q, a, a.replace(q.split()[-4], "Hinddriork")) for q, a in rows]
    others = [(q, a, rows[(i + 1) % 4][1]) for i, (q, a) in enumerate(rows)]  # another's fact
    assert fact_recall(same) == 1.0
    assert fact_recall(renamed) == 1.0  # the fact is still stated: not forgotten
    assert fact_recall(others) == 0.0  # right form, someone else's fact (the retain model's way)
    assert fact_recall([]) is None


def test_novel_words_are_words_found_nowhere_in_the_dataset(tiny_data):
    from unlearn.data import Dataset
    from unlearn.eval.fluency import dataset_vocabulary, novel_words

    ds = Dataset(tiny_data)
    vocab = dataset_vocabulary(ds)
    row = ds.records("forget10")[0]
    assert novel_words(row["answer"], vocab) == []  # the dataset's own words
    assert novel_words("translatoryreconer in 1992.", vocab) == ["translatoryreconer"]
    assert novel_words("Shabynmawater.", vocab) == ["Shabynmawater"]
