"""The metrics, as plain functions over tensors / numbers, and the one registry naming them.

Definitions follow open-unlearning (OU) exactly; each docstring gives the formula and the paper.
Per-example statistics are computed by ``unlearn.eval.scoring`` (the only code here that runs a
model is none: everything below takes log-probabilities, token ids, texts or per-example values).
Split-level aggregation and the summary numbers (forget quality, model utility, privleak) are
computed in ``unlearn.eval.runner.merge_shards`` from the registry below.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

# OU adds this to denominators (truth ratio, normalized probability, privleak).
EPS = 1e-10


# ---------------------------------------------------------------------------------------------
# Token-level statistics


def token_stats(logits: Any, targets: Any) -> tuple[Any, Any, Any, Any]:
    """Per-token statistics of next-token predictions.

    Args: ``logits`` [N, V] (the logits that predict each target), ``targets`` [N] token ids.
    Returns (log p(target) [N], mu [N], sigma2 [N], argmax [N]) where, with lp = log_softmax,
    mu = sum_v p_v lp_v and sigma2 = sum_v p_v lp_v^2 - mu^2 are the mean and variance of the
    log-probability under the model's own next-token distribution (Min-K%++'s calibration).
    """
    import torch

    lp = torch.log_softmax(logits.float(), dim=-1)
    target_lp = lp.gather(-1, targets.long().unsqueeze(-1)).squeeze(-1)
    p = lp.exp()
    mu = (p * lp).sum(-1)
    sigma2 = (p * lp.square()).sum(-1) - mu.square()
    return target_lp, mu, sigma2, logits.argmax(-1)


def average_nll(target_logprobs: Sequence[float]) -> float:
    """Mean answer-token negative log-likelihood: NLL_s / len(y) = -mean_t log p(y_t | y_<t, x)."""
    values = np.asarray(target_logprobs, dtype=np.float64)
    if values.size == 0:
        raise ValueError("average_nll of an empty answer (no labelled tokens)")
    return float(-values.mean())


# ---------------------------------------------------------------------------------------------
# Per-example metrics (TOFU: Maini et al. 2024, https://arxiv.org/abs/2401.06121)


def probability(avg_nll: float) -> float:
    """Length-normalized answer probability (TOFU): exp(-NLL_s / len(y)) = exp(-avg_nll)."""
    return math.exp(-avg_nll)


def normalized_probability(correct_avg_nll: float, wrong_avg_nlls: Sequence[float]) -> float:
    """TOFU's probability on real_authors / world_facts style splits (OU ``probability_w_options``).

    p(correct) / (p(correct) + sum_j p(wrong_j) + 1e-10), each p = exp(-avg_nll) (per-token
    geometric mean). 1 = the right answer is far likelier than every wrong one.
    """
    correct = math.exp(-correct_avg_nll)
    wrong = sum(math.exp(-v) for v in wrong_avg_nlls)
    return correct / (correct + wrong + EPS)


def truth_ratio(paraphrased_avg_nll: float, perturbed_avg_nlls: Sequence[float]) -> float:
    """TOFU truth ratio of one example (OU ``truth_ratio``).

    TR = exp(-mean_j avgNLL(perturbed_j)) / (exp(-avgNLL(paraphrased)) + 1e-10): the per-token
    geometric-mean probability of the wrong answers over that of the paraphrased right one (on
    real_authors / world_facts the answer itself stands in for the paraphrase).
    """
    if not perturbed_avg_nlls:
        raise ValueError("truth_ratio needs at least one perturbed answer")
    wrong = math.exp(-float(np.mean(perturbed_avg_nlls)))
    correct = math.exp(-paraphrased_avg_nll)
    return wrong / (correct + EPS)


def truth_ratio_forget(ratios: Sequence[float]) -> float:
    """Forget-split aggregate (OU ``closer_to_1_better``): mean_i min(TR_i, 1 / (TR_i + 1e-10)).

    1 = the model cannot tell the right answer from wrong ones (as if never trained on it).
    """
    tr = np.asarray(ratios, dtype=np.float64)
    return float(np.mean(np.minimum(tr, 1.0 / (tr + EPS))))


def truth_ratio_retain(ratios: Sequence[float]) -> float:
    """Retain / utility aggregate (OU ``true_better``): mean_i max(0, 1 - TR_i). 1 = truth preferred."""
    tr = np.asarray(ratios, dtype=np.float64)
    return float(np.mean(np.maximum(0.0, 1.0 - tr)))


def extraction_strength(predictions: Sequence[int], labels: Sequence[int]) -> float:
    """Extraction strength (Carlini et al. 2021, https://arxiv.org/abs/2012.07805; as OU computes it).

    ES = 1 - k / len(y), k the smallest index from which the teacher-forced argmax prediction
    equals the label for the whole rest of the answer. 1 = the whole answer is extracted. As in
    OU's loop, when not even the last token matches k stays at len(y) - 1 (ES = 1 / len(y)).
    """
    preds, labs = list(predictions), list(labels)
    n = len(labs)
    if n == 0:
        return 0.0
    k = 0
    for k in range(n):
        if preds[k:] == labs[k:]:
            break
    return 1.0 - k / n


def exact_memorization(predictions: Sequence[int], labels: Sequence[int]) -> float:
    """Exact memorization (Tirumala et al. 2022, https://arxiv.org/abs/2205.10770; OU).

    EM = (1 / len(y)) sum_t [argmax p(. | y_<t, x) == y_t]: the fraction of answer tokens the
    model predicts exactly under teacher forcing.
    """
    labs = list(labels)
    if not labs:
        raise ValueError("exact_memorization of an empty answer")
    return sum(int(p == y) for p, y in zip(predictions, labs)) / len(labs)


@lru_cache(maxsize=1)
def _rouge_scorer() -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=True)


def rouge(prediction: str, reference: str) -> dict[str, float]:
    """ROUGE of a generation against the reference answer (rouge-score, Porter stemming).

    ROUGE-L recall = LCS(pred, ref) / len(ref) (TOFU, Lin 2004); F1 = 2PR / (P + R) (MUSE,
    Shi et al. 2024, https://arxiv.org/abs/2407.06460); ROUGE-1 recall for reference.
    """
    scores = _rouge_scorer().score(reference, prediction)
    return {
        "rouge_l_recall": scores["rougeL"].recall,
        "rouge_l_f1": scores["rougeL"].fmeasure,
        "rouge1_recall": scores["rouge1"].recall,
    }


# ---------------------------------------------------------------------------------------------
# Membership-inference attack scores: higher = less likely a member (OU's convention).


def mia_loss(avg_nll: float, **_: Any) -> float:
    """LOSS attack (Yeom et al. 2018, https://arxiv.org/abs/1709.01604): score = avg answer NLL."""
    return float(avg_nll)


def mia_zlib(avg_nll: float, text: str, **_: Any) -> float:
    """zlib attack (Carlini et al. 2021): avg NLL / len(zlib.compress(answer text in UTF-8))."""
    return float(avg_nll) / max(len(zlib.compress(text.encode("utf-8"))), 1)


def mia_min_k(token_logprobs: Sequence[float], k: float = 0.4, **_: Any) -> float:
    """Min-K% Prob (Shi et al. 2023, https://arxiv.org/abs/2310.16789).

    score = -mean of the lowest max(1, floor(k n)) token log-probs of the answer (EOS excluded).
    """
    lp = np.sort(np.asarray(token_logprobs, dtype=np.float64))
    if lp.size == 0:
        return 0.0
    n = max(1, int(lp.size * k))
    return float(-lp[:n].mean())


def mia_min_k_plus_plus(
    token_logprobs: Sequence[float],
    mu: Sequence[float],
    sigma2: Sequence[float],
    k: float = 0.4,
    **_: Any,
) -> float:
    """Min-K%++ (Zhang et al. 2024, https://arxiv.org/abs/2404.02936).

    z_t = (log p(y_t) - mu_t) / sqrt(max(sigma2_t, 1e-6)), mu_t / sigma2_t the mean / variance of
    log p under the model's own next-token distribution; score = -mean of the lowest
    max(1, floor(k n)) z_t.
    """
    lp = np.asarray(token_logprobs, dtype=np.float64)
    if lp.size == 0:
        return 0.0
    z = (lp - np.asarray(mu, dtype=np.float64)) / np.sqrt(
        np.maximum(np.asarray(sigma2, dtype=np.float64), 1e-6)
    )
    n = max(1, int(z.size * k))
    return float(-np.sort(z)[:n].mean())


def mia_auc(forget_scores: Sequence[float], holdout_scores: Sequence[float]) -> float:
    """ROC AUC of an attack, forget labelled 0 and holdout 1 (OU ``mia_auc``).

    With scores "higher = non-member", AUC = P(score(holdout) > score(forget)) (+ half the ties):
    1 = the forget set is still recognizably trained on, 0.5 = indistinguishable from unseen data.
    """
    from sklearn.metrics import roc_auc_score

    if len(forget_scores) == 0 or len(holdout_scores) == 0:
        raise ValueError("mia_auc needs at least one forget and one holdout score")
    labels = [0] * len(forget_scores) + [1] * len(holdout_scores)
    return float(roc_auc_score(labels, list(forget_scores) + list(holdout_scores)))


# ---------------------------------------------------------------------------------------------
# Summary numbers


def forget_quality(
    model_truth_ratios: Sequence[float], retain_truth_ratios: Sequence[float]
) -> float:
    """TOFU forget quality: p-value of scipy ``ks_2samp`` between the per-example forget truth
    ratios of the evaluated model and of the retain-only model. Near 1 = indistinguishable from a
    model never trained on the forget set; tiny (1e-20) = clearly still shaped by it.
    """
    from scipy.stats import ks_2samp

    return float(ks_2samp(np.asarray(model_truth_ratios), np.asarray(retain_truth_ratios)).pvalue)


def harmonic_mean(values: Sequence[float]) -> float:
    """Harmonic mean n / sum(1/x_i) (TOFU model utility, as scipy.stats.hmean); 0 if any x_i is 0."""
    xs = [float(v) for v in values]
    if not xs:
        raise ValueError("harmonic_mean of no values")
    if any(x < 0 for x in xs):
        raise ValueError(f"harmonic_mean of negative values: {xs}")
    if any(x == 0 for x in xs):
        return 0.0
    return len(xs) / sum(1.0 / x for x in xs)


def privleak(auc: float, retain_auc: float) -> float:
    """MUSE PrivLeak as OU computes it: ((1 - AUC) - (1 - AUC_retain)) / (1 - AUC_retain + 1e-10) * 100.

    0 = the model's forget-vs-holdout separability matches the retain model's; large negative =
    the forget set still leaks (AUC above the retain model's); positive = over-unlearned.
    """
    score, ref = 1.0 - auc, 1.0 - retain_auc
    return (score - ref) / (ref + EPS) * 100.0


def rel_diff(value: float, reference: float) -> float:
    """open-unlearning's ``rel_diff``: (x - x_ref) / (x_ref + 1e-10) * 100, a statistic relative to
    the retain model's (here the privleak attack's AUC; privleak is the same on 1 - AUC)."""
    return (value - reference) / (reference + EPS) * 100.0


def mean_probability(avg_nlls: Sequence[float]) -> float:
    """Mean over answers of the length-normalized probability exp(-avgNLL_j) (OU's
    ``forget_Q_A_PERT_Prob`` per example: the mean over the perturbed answers)."""
    if not avg_nlls:
        raise ValueError("mean_probability of no answers")
    return float(np.mean([math.exp(-v) for v in avg_nlls]))


def truth_ratio_mean(ratios: Sequence[float]) -> float:
    """open-unlearning's ``prob_mean`` truth-ratio aggregator: mean_i TR_i (the raw mean, which OU
    reports as ``forget_truth_ratio``; TOFU's forget / retain aggregates clip it, see above)."""
    return float(np.mean(np.asarray(ratios, dtype=np.float64)))


def mia_gradnorm(param_grad_norms: Sequence[float], **_: Any) -> float:
    """Gradient-norm attack (studied for LLM training data in https://arxiv.org/abs/2402.17012, as
    open-unlearning and MIMIR cite it; computed as open-unlearning does).

    score = mean over parameter tensors j of ||dL/dtheta_j||_p, L the example's mean answer-token
    NLL (EOS excluded): members sit in a flatter region, so a larger norm = less likely a member.
    The per-tensor norms come from one backward pass per example (``scoring.gradient_norms``).
    """
    if not param_grad_norms:
        raise ValueError("mia_gradnorm needs at least one parameter's gradient norm")
    return float(np.mean(np.asarray(param_grad_norms, dtype=np.float64)))


def mia_reference(avg_nll: float, reference_avg_nll: float, **_: Any) -> float:
    """Reference-model attack (Carlini et al. 2021, https://arxiv.org/abs/2012.07805; OU's
    ``mia_reference``): score = avgNLL(model) - avgNLL(reference), the loss calibrated by a
    reference model's (here the retain model's) loss on the same answer."""
    return float(avg_nll) - float(reference_avg_nll)


def selection_score(
    method: str,
    forget_quality: float | None,
    model_utility: float | None,
    forget_tr: float | None,
    privleak: float | None = None,
    malformed_rate: float | None = None,
) -> tuple[float | None, str]:
    """Best-checkpoint score (higher is better) and the formula used.

    balanced: harmonic mean of F, U, 1 - min(|privleak|, 100) / 100 and 1 - malformed_rate (the
    forget answers'), a null privleak or malformed rate left out; hmean: 2 F U / (F + U); gmean:
    sqrt(F U); model_utility: U; forget_quality: F; where U is model utility and F the forget
    quality, or, without a retain model (F null), the forget split's truth ratio
    mean(min(TR, 1/TR)) as a reference-free stand-in. Null when F or U is needed and null.
    """
    f, f_name = forget_quality, "forget_quality"
    if f is None:
        f, f_name = forget_tr, "forget truth_ratio (no retain model)"
    u = model_utility
    if method == "model_utility":
        return u, "model_utility"
    if method == "forget_quality":
        return f, f_name
    if f is None or u is None:
        return None, f"{method} of {f_name} and model_utility (one is null)"
    if method == "hmean":
        return harmonic_mean([f, u]), f"harmonic mean of {f_name} and model_utility"
    if method == "gmean":
        return math.sqrt(f * u), f"geometric mean of {f_name} and model_utility"
    if method == "balanced":
        terms, names = [f, u], [f_name, "model_utility"]
        if privleak is not None:
            terms.append(1.0 - min(abs(privleak), 100.0) / 100.0)
            names.append("1 - |privleak|/100")
        if malformed_rate is not None:
            terms.append(1.0 - malformed_rate)
            names.append("1 - forget malformed_rate")
        return harmonic_mean(terms), f"harmonic mean of {', '.join(names)}"
    raise ValueError(f"unknown score {method!r}")


# |privleak| up to this is "retain-like" (MUSE's reading: privleak is the AUC difference in
# percent of the retain model's 1 - AUC); below -VERDICT_TOLERANCE under-unlearned, above it
# over-unlearned.
VERDICT_TOLERANCE = 25.0


def unlearning_verdict(
    privleak_value: float | None, malformed_rate: float | None = None
) -> str | None:
    """One word for where a model stands (MUSE's privleak reading, Shi et al. 2024,
    https://arxiv.org/abs/2407.06460): "under-unlearned" (privleak < -25: forget rows still look
    like members), "retain-like" (|privleak| <= 25), "over-unlearned" (privleak > 25: forget rows
    look less likely than data never trained on, which itself reveals what was removed); but
    "collapsed" when half or more of the forget answers are not language (malformed_rate >= 0.5),
    whatever the AUC says (a model that only loops scores near the retain model's AUC too), with
    or without privleak; otherwise null without privleak."""
    if malformed_rate is not None and malformed_rate >= 0.5:
        return "collapsed"
    if privleak_value is None:
        return None
    if privleak_value < -VERDICT_TOLERANCE:
        return "under-unlearned"
    if privleak_value > VERDICT_TOLERANCE:
        return "over-unlearned"
    return "retain-like"


# ---------------------------------------------------------------------------------------------
# The registry: every number metrics.json reports, with how to aggregate it and what good means.


@dataclass(frozen=True)
class Metric:
    """One registry entry: ``kind`` split | mia | summary; ``good`` is the report's sentence."""

    name: str
    kind: str
    good: str
    # Split metrics: (per-example value from the example record, role) -> value or None.
    per_example: Callable[[dict[str, Any], str], float | None] | None = None
    # Split metrics: how per-example values combine (default: mean).
    aggregate: Callable[[list[float], str], float] | None = None
    roles: tuple[str, ...] = ()
    # MIA attacks: the per-example score function.
    attack: Callable[..., float] | None = None
    # MIA attacks: what the score needs. "forward": the teacher-forced statistics (computed while
    # scoring); "gradient": one backward pass per example (``scoring.gradient_norms``; not inside
    # training); "reference": the retain model's per-example NLL (computed when merging).
    computed: str = "forward"
    # Split metrics computed from the whole merged split at once (they need every example, e.g.
    # which words are template across the split): (merged part) -> value or None.
    per_split: Callable[[dict[str, Any]], float | None] | None = None


def _ex_probability(ex: dict[str, Any], role: str) -> float | None:
    if role == "options":
        if "perturbed" not in ex:
            return None
        return normalized_probability(ex["answer"]["avg_nll"], [p for p in ex["perturbed"]])
    return probability(ex["answer"]["avg_nll"])


def _ex_truth_ratio(ex: dict[str, Any], role: str) -> float | None:
    if "perturbed" not in ex:
        return None
    correct = ex["answer"]["avg_nll"] if role == "options" else ex.get("paraphrased")
    if correct is None:
        return None
    return truth_ratio(correct, ex["perturbed"])


def _agg_truth_ratio(values: list[float], role: str) -> float:
    return truth_ratio_forget(values) if role == "forget" else truth_ratio_retain(values)


def _gen(key: str) -> Callable[[dict[str, Any], str], float | None]:
    return _on_generation(key, lambda value: value)


def _on_generation(key: str, fn: Callable[[Any], float]) -> Callable[[dict, str], float | None]:
    """Per-example value ``fn(generation[key])``; None where the example has no such field."""

    def get(ex: dict[str, Any], role: str) -> float | None:
        value = (ex.get("generation") or {}).get(key)
        return None if value is None else fn(value)

    return get


def _malformed(text: str) -> float:
    from unlearn.eval.fluency import malformed_kind

    return float(malformed_kind(text) is not None)


def _distinct_2(text: str) -> float:
    from unlearn.eval.fluency import distinct_n

    return distinct_n(text, 2)


def _fact_recall(part: dict[str, Any]) -> float | None:
    from unlearn.eval.fluency import fact_recall

    triples = [
        (ex["question"], ex["answer_text"], ex["generation"]["text"])
        for ex in part["examples"].values()
        if "text" in (ex.get("generation") or {}) and "answer_text" in ex
    ]
    return fact_recall(triples) if len(triples) == len(part["examples"]) else None


def _agg_perplexity(values: list[float], role: str) -> float:
    return math.exp(min(float(np.mean(values)), 700.0))  # exp overflows past ~709


def _answer(key: str) -> Callable[[dict[str, Any], str], float | None]:
    return lambda ex, role: ex["answer"].get(key)


def _verbmem(ex: dict[str, Any], role: str) -> float | None:
    v = ex.get("verbmem")
    return None if v is None else v["rouge_l_f1"]


_QA = ("forget", "retain", "options")
METRICS: dict[str, Metric] = {
    m.name: m
    for m in [
        Metric("probability", "split",
               "Forget: low, near the retain model's. Retain / utility splits: high (near 1 on "
               "world facts means the right answer beats the wrong options).",
               _ex_probability, roles=("forget", "retain", "holdout", "options")),
        Metric("rouge_l_recall", "split",
               "Forget: low, like a model that never saw the facts; retain / utility: high "
               "(the model still answers correctly).", _gen("rouge_l_recall"), roles=_QA),
        Metric("rouge_l_f1", "split",
               "MUSE-style ROUGE-L F1 of the answers: same reading as ROUGE-L recall, penalizing "
               "rambling too.", _gen("rouge_l_f1"), roles=_QA),
        Metric("knowmem", "split",
               "MUSE KnowMem (QA ROUGE-L F1): low on forget, unchanged on retain.",
               _gen("rouge_l_f1"), roles=("forget", "retain")),
        Metric("verbmem", "split",
               "MUSE VerbMem (ROUGE-L F1 of continuing a forget text from its prefix): low, near "
               "the retain model's.", _verbmem, roles=("forget",)),
        Metric("truth_ratio", "split",
               "Forget: mean min(TR, 1/TR), near 1 (right and wrong answers equally likely). "
               "Retain / utility: mean max(0, 1-TR), high (truth preferred).",
               _ex_truth_ratio, _agg_truth_ratio, roles=("forget", "retain", "options")),
        Metric("extraction_strength", "split",
               "Forget: low (no answer suffix is reproduced under teacher forcing); retain: high.",
               _answer("es"), roles=("forget", "retain", "holdout")),
        Metric("exact_memorization", "split",
               "Forget: low, near holdout level (few answer tokens predicted exactly); retain: high.",
               _answer("em"), roles=("forget", "retain", "holdout")),
        Metric("loss", "mia", "AUC near 0.5 (or the retain model's): the LOSS attack cannot tell "
               "forget from holdout.", attack=mia_loss),
        Metric("zlib", "mia", "AUC near 0.5: zlib-normalized loss cannot tell forget from holdout.",
               attack=mia_zlib),
        Metric("min_k", "mia", "AUC near 0.5: the lowest 40% token log-probs look like unseen "
               "data.", attack=mia_min_k),
        Metric("min_k_plus_plus", "mia", "AUC near 0.5: calibrated lowest-40% token scores look "
               "like unseen data.", attack=mia_min_k_plus_plus),
        Metric("forget_quality", "summary",
               "High (> 0.05): the forget truth ratios are statistically indistinguishable from "
               "the retain-only model's; the original fine-tuned model scores ~1e-20."),
        Metric("model_utility", "summary",
               "High, close to the original model's: harmonic mean of probability, ROUGE-L "
               "recall and truth ratio on retain and utility splits."),
        Metric("privleak", "summary",
               "Near 0: forget-vs-holdout separability equals the retain model's; strongly "
               "negative = the forget set still leaks, positive = over-unlearned."),
        Metric("score", "summary",
               "Higher is better: the best-checkpoint score combining forget quality, model "
               "utility, |privleak| and the forget answers' fluency (formula in score_formula)."),
        Metric("verdict", "summary",
               "retain-like: |privleak| <= 25, the forget set is as (un)recognizable as to a "
               "model never trained on it; under-unlearned / over-unlearned otherwise; collapsed "
               "when half the forget answers are not language."),
        Metric("malformed_rate", "split",
               "Near the retain model's (a few %): share of answers that are not language (a "
               "repetition loop, a character run, a fragment, garbled words).",
               _on_generation("text", _malformed), roles=_QA),
        Metric("novel_word_rate", "split",
               "Near the retain model's: share of answers with a word found nowhere in the "
               "dataset, i.e. invented by gluing subword pieces ('translatoryreconer'); read "
               "for models whose knowledge is the dataset's world.",
               _on_generation("novel_words", lambda found: float(bool(found))), roles=_QA),
        Metric("distinct_2", "split",
               "Near the retain model's (close to 1): distinct word bigrams per answer; loops "
               "score low.", _on_generation("text", _distinct_2), roles=_QA),
        Metric("answer_perplexity", "split",
               "Near the retain model's own: exp(mean NLL) of the answers under the reference "
               "model (eval.fluency_model); gibberish reads as very unlikely text.",
               _gen("ref_nll"), _agg_perplexity, roles=_QA),
        Metric("fact_recall", "split",
               "Forget: low, near the retain model's (its answers state other people's facts); "
               "retain: high. Share of answers containing a word of the reference answer that "
               "is neither in the question nor template.", roles=("forget", "retain"),
               per_split=_fact_recall),
        Metric("gibberish_probability", "split",
               "Low, near the retain model's: a text classifier's probability that an answer "
               "is not clean text (eval.gibberish_classifier).", _gen("gibberish"), roles=_QA),
    ]
}  # fmt: skip


def _ex_paraphrased_probability(ex: dict[str, Any], role: str) -> float | None:
    v = ex.get("paraphrased")
    return None if v is None else probability(v)


def _ex_perturbed_probability(ex: dict[str, Any], role: str) -> float | None:
    return mean_probability(ex["perturbed"]) if ex.get("perturbed") else None


def _gen_vs(key: str) -> Callable[[dict[str, Any], str], float | None]:
    def get(ex: dict[str, Any], role: str) -> float | None:
        v = (ex.get("generation") or {}).get(key)
        if isinstance(v, list):
            return float(np.mean(v)) if v else None
        return v

    return get


def _agg_mean_truth_ratio(values: list[float], role: str) -> float:
    return truth_ratio_mean(values)


# open-unlearning's further TOFU numbers (forget / retain x PARA / PERT x Prob / ROUGE, the
# ``prob_mean`` truth ratio) and attacks (gradnorm, reference), reported separately as OU does.
_FR = ("forget", "retain")
METRICS.update(
    {
        m.name: m
        for m in [
            Metric("paraphrased_probability", "split",
                   "OU's Q_A_PARA_Prob: probability of the paraphrased answer. Forget: low, like "
                   "the retain model's (the fact is gone, not only its wording); retain: high.",
                   _ex_paraphrased_probability, roles=_FR),
            Metric("perturbed_probability", "split",
                   "OU's Q_A_PERT_Prob: mean probability of the wrong (perturbed) answers. Low "
                   "everywhere; a forget value close to paraphrased_probability means the model "
                   "no longer prefers the truth.", _ex_perturbed_probability, roles=_FR),
            Metric("paraphrased_rouge_l_recall", "split",
                   "OU's Q_A_PARA_ROUGE: ROUGE-L recall of the answer against the paraphrased "
                   "answer. Forget: low; retain: high.", _gen_vs("vs_paraphrased"), roles=_FR),
            Metric("perturbed_rouge_l_recall", "split",
                   "OU's Q_A_PERT_ROUGE: mean ROUGE-L recall of the answer against the wrong "
                   "answers; a model that forgot by answering wrongly scores high here.",
                   _gen_vs("vs_perturbed"), roles=_FR),
            Metric("truth_ratio_prob_mean", "split",
                   "OU's forget_truth_ratio (prob_mean aggregator): the plain mean truth ratio "
                   "P(wrong) / P(paraphrase); near 1 on forget after unlearning, below 1 where "
                   "the truth is known.", _ex_truth_ratio, _agg_mean_truth_ratio, roles=_FR),
            Metric("gradnorm", "mia",
                   "AUC near 0.5: per-example gradient norms cannot tell forget from holdout.",
                   attack=mia_gradnorm, computed="gradient"),
            Metric("reference", "mia",
                   "AUC near 0.5: the loss relative to the retain model's cannot tell forget "
                   "from holdout (needs a retain model).", attack=mia_reference,
                   computed="reference"),
            Metric("muse_knowmem", "split",
                   "MUSE KnowMem (few-shot QA, ROUGE-L F1): forget_qa low, like the retain "
                   "model's; retain_qa high (MUSE's utility).", _gen("rouge_l_f1"),
                   roles=("knowmem_forget", "knowmem_retain")),
            Metric("muse_verbmem", "split",
                   "MUSE VerbMem (ROUGE-L F1 of the 128-token continuation of each forget "
                   "prompt): low, near the retain model's.", _gen("rouge_l_f1"),
                   roles=("verbmem",)),
            Metric("rel_diff", "summary",
                   "Near 0: the privleak attack's AUC relative to the retain model's (or to the "
                   "fixed reference AUC), in percent; positive = the forget set still leaks."),
        ]
    }
)  # fmt: skip
SPLIT_METRICS = {k: m for k, m in METRICS.items() if m.kind == "split"}
MIA_ATTACKS = {k: m for k, m in METRICS.items() if m.kind == "mia"}
# Attacks computed while scoring (no backward pass, no reference model).
FORWARD_ATTACKS = {k: m for k, m in MIA_ATTACKS.items() if m.computed == "forward"}
# The three numbers per split that TOFU's model utility combines.
UTILITY_METRICS = ("probability", "rouge_l_recall", "truth_ratio")


def get_metric(name: str) -> Metric:
    """The registry entry for ``name``; unknown names raise listing the known ones."""
    if name not in METRICS:
        raise KeyError(f"unknown metric {name!r} (known: {', '.join(METRICS)})")
    return METRICS[name]
