"""Each metric against a hand-computed value on a tiny case."""

from __future__ import annotations

import math
import zlib

import pytest
import torch

from unlearn.errors import ConfigError
from unlearn.eval import EvalConfig, get_metric, selection_score
from unlearn.eval import metrics as M


def test_token_stats_on_constructed_logits():
    # row 0: uniform over 2 tokens; row 1: p = (0.75, 0.25)
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])
    lp, mu, sigma2, argmax = M.token_stats(logits, torch.tensor([0, 1]))
    ln2 = math.log(2)
    assert lp.tolist() == pytest.approx([-ln2, math.log(0.25)], abs=1e-6)
    mu1 = 0.75 * math.log(0.75) + 0.25 * math.log(0.25)
    var1 = 0.75 * math.log(0.75) ** 2 + 0.25 * math.log(0.25) ** 2 - mu1**2
    assert mu.tolist() == pytest.approx([-ln2, mu1], abs=1e-6)
    assert sigma2.tolist() == pytest.approx([0.0, var1], abs=1e-6)
    assert argmax.tolist() == [0, 0]


def test_probability_and_average_nll():
    assert M.average_nll([-1.0, -2.0, -3.0]) == pytest.approx(2.0)
    assert M.probability(2.0) == pytest.approx(math.exp(-2))
    with pytest.raises(ValueError):
        M.average_nll([])


def test_normalized_probability():
    e1, e2, e3 = math.exp(-1), math.exp(-2), math.exp(-3)
    assert M.normalized_probability(1.0, [2.0, 3.0]) == pytest.approx(e1 / (e1 + e2 + e3))


def test_truth_ratio_and_aggregates():
    # wrong = exp(-mean(2, 4)) = e^-3, right = e^-1 -> TR = e^-2
    assert M.truth_ratio(1.0, [2.0, 4.0]) == pytest.approx(math.exp(-2), rel=1e-8)
    assert M.truth_ratio_forget([0.5, 2.0, 1.0]) == pytest.approx((0.5 + 0.5 + 1.0) / 3)
    assert M.truth_ratio_retain([0.25, 2.0]) == pytest.approx((0.75 + 0.0) / 2)
    with pytest.raises(ValueError):
        M.truth_ratio(1.0, [])


def test_extraction_strength_and_exact_memorization():
    assert M.extraction_strength([1, 9, 3, 4], [1, 2, 3, 4]) == pytest.approx(1 - 2 / 4)
    assert M.extraction_strength([1, 2, 3, 4], [1, 2, 3, 4]) == 1.0
    # nothing matches, not even the last token: OU's loop leaves k = n - 1
    assert M.extraction_strength([0, 0, 0, 0], [1, 2, 3, 4]) == pytest.approx(1 / 4)
    assert M.exact_memorization([1, 9, 3, 4], [1, 2, 3, 4]) == pytest.approx(3 / 4)


def test_rouge_recall_and_f1():
    s = M.rouge("the cat sat", "the cat sat on the mat")
    assert s["rouge_l_recall"] == pytest.approx(3 / 6)
    assert s["rouge_l_f1"] == pytest.approx(2 * 0.5 * 1.0 / 1.5)
    # stemming: "running" matches "runs"
    assert M.rouge("Ann runs", "Ann running")["rouge_l_recall"] == pytest.approx(1.0)


def test_mia_scores():
    assert M.mia_loss(avg_nll=1.5) == 1.5
    assert M.mia_zlib(avg_nll=2.0, text="aaaa") == pytest.approx(2.0 / len(zlib.compress(b"aaaa")))
    # lowest int(5 * 0.4) = 2 log-probs: -5, -4
    assert M.mia_min_k([-1.0, -5.0, -3.0, -2.0, -4.0], k=0.4) == pytest.approx(4.5)
    # at least one token
    assert M.mia_min_k([-2.0], k=0.4) == pytest.approx(2.0)
    # z = ((-1 + 1.5) / 0.5, (-3 + 1) / 2) = (1, -1); lowest int(2 * 0.5) = 1 -> -(-1)
    assert M.mia_min_k_plus_plus(
        [-1.0, -3.0], mu=[-1.5, -1.0], sigma2=[0.25, 4.0], k=0.5
    ) == pytest.approx(1.0)
    # variance clamped at 1e-6: z = (-1 - -1.001) / 1e-3 = 1, score = -1
    assert M.mia_min_k_plus_plus([-1.0], mu=[-1.001], sigma2=[0.0], k=0.4) == pytest.approx(-1.0)


def test_mia_auc_hand_counted():
    # holdout > forget in 3 of 4 pairs
    assert M.mia_auc([0.1, 0.4], [0.35, 0.8]) == pytest.approx(0.75)
    assert M.mia_auc([0.1, 0.2], [0.3, 0.4]) == 1.0
    with pytest.raises(ValueError):
        M.mia_auc([], [0.3])


def test_forget_quality_exact_ks():
    assert M.forget_quality([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]) == pytest.approx(1.0)
    # fully separated samples of 3 and 3: exact two-sided p = 2 / C(6, 3) = 0.1
    assert M.forget_quality([1.0, 2.0, 3.0], [4.0, 5.0, 6.0]) == pytest.approx(0.1)


def test_harmonic_mean_privleak():
    assert M.harmonic_mean([1.0, 0.5, 0.25]) == pytest.approx(3 / 7)
    assert M.harmonic_mean([0.5, 0.0]) == 0.0
    # ((1 - 0.9) - (1 - 0.6)) / (1 - 0.6) * 100
    assert M.privleak(0.9, 0.6) == pytest.approx(-75.0)
    assert M.privleak(0.6, 0.6) == pytest.approx(0.0)


def test_selection_score():
    assert selection_score("hmean", 0.5, 0.25, None)[0] == pytest.approx(1 / 3)
    assert selection_score("gmean", 0.5, 0.25, None)[0] == pytest.approx(math.sqrt(0.125))
    score, formula = selection_score("hmean", None, 0.5, 0.5)
    assert score == pytest.approx(0.5) and "truth_ratio" in formula
    assert selection_score("hmean", None, 0.5, None)[0] is None
    assert selection_score("model_utility", None, 0.4, None)[0] == 0.4


def test_registry_and_config_errors():
    assert get_metric("truth_ratio").kind == "split"
    with pytest.raises(KeyError, match="known"):
        get_metric("bleu")
    with pytest.raises(ConfigError, match=r"mia_attacks\[1\].*known"):
        EvalConfig(mia_attacks=["loss", "lira"]).check()
    with pytest.raises(ConfigError, match="batch_size"):
        EvalConfig(batch_size=0).check()


def test_config_loads_from_overrides():
    from unlearn.config import load_config

    cfg = load_config(EvalConfig, None, ["forget_split=forget01", "max_new_tokens=200"])
    assert cfg.forget_split == "forget01" and cfg.max_new_tokens == 200
    with pytest.raises(ConfigError, match="unknown config key"):
        load_config(EvalConfig, None, ["max_tokens=3"])
    with pytest.raises(ConfigError, match="on_missing_perturbed"):
        load_config(EvalConfig, None, ["on_missing_perturbed=ignore"])
