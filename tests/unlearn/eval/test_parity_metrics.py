"""open-unlearning's further metrics, by hand: rel_diff, the prob_mean truth ratio, paraphrased /
perturbed probability and ROUGE, the gradient-norm and reference-model attacks."""

from __future__ import annotations

import math

import pytest
import torch

from unlearn.errors import ConfigError
from unlearn.eval import EvalConfig
from unlearn.eval.merge import mia_aucs, split_metrics
from unlearn.eval.metrics import (
    METRICS,
    MIA_ATTACKS,
    mean_probability,
    mia_gradnorm,
    mia_reference,
    privleak,
    rel_diff,
    truth_ratio,
    truth_ratio_mean,
)


def test_rel_diff_and_privleak_by_hand():
    assert rel_diff(0.75, 0.5) == pytest.approx(50.0)  # (0.75 - 0.5) / 0.5 * 100
    assert rel_diff(0.5, 0.5) == 0.0
    # privleak is the same comparison on 1 - AUC (MUSE's convention)
    assert privleak(0.75, 0.5) == pytest.approx((0.25 - 0.5) / 0.5 * 100)


def test_truth_ratio_prob_mean_by_hand():
    ratios = [0.5, 2.0, 1.0]
    assert truth_ratio_mean(ratios) == pytest.approx(3.5 / 3)  # the plain mean: OU's prob_mean
    metric = METRICS["truth_ratio_prob_mean"]
    ex = {"paraphrased": math.log(2.0), "perturbed": [math.log(4.0), math.log(4.0)]}
    # TR = exp(-ln 4) / exp(-ln 2) = 1/2
    assert metric.per_example(ex, "forget") == pytest.approx(0.5, rel=1e-9)
    assert truth_ratio(math.log(2.0), [math.log(4.0)]) == pytest.approx(0.5, rel=1e-9)


def test_paraphrased_and_perturbed_probability_by_hand():
    assert mean_probability([math.log(2.0), math.log(4.0)]) == pytest.approx((0.5 + 0.25) / 2)
    ex = {
        "answer": {"avg_nll": 0.1},
        "paraphrased": math.log(2.0),
        "perturbed": [math.log(4.0), math.log(8.0)],
        "generation": {
            "rouge_l_recall": 1.0,
            "rouge_l_f1": 1.0,
            "rouge1_recall": 1.0,
            "vs_paraphrased": 0.5,
            "vs_perturbed": [0.2, 0.4],
        },  # fmt: skip
    }
    assert METRICS["paraphrased_probability"].per_example(ex, "forget") == pytest.approx(0.5)
    assert METRICS["perturbed_probability"].per_example(ex, "retain") == pytest.approx(0.1875)
    assert METRICS["paraphrased_rouge_l_recall"].per_example(ex, "forget") == 0.5
    assert METRICS["perturbed_rouge_l_recall"].per_example(ex, "forget") == pytest.approx(0.3)
    # aggregated over a split like every split metric: the mean over examples
    part = {"role": "forget", "skipped": {}, "examples": {"a": ex, "b": {**ex, "paraphrased": 0.0}}}
    values, _ = split_metrics(part)
    assert values["paraphrased_probability"] == pytest.approx((0.5 + 1.0) / 2)
    assert values["perturbed_rouge_l_recall"] == pytest.approx(0.3)


def test_gradnorm_and_reference_attacks_by_hand():
    assert mia_gradnorm(param_grad_norms=[1.0, 3.0]) == 2.0  # mean over parameter tensors
    assert mia_reference(avg_nll=2.5, reference_avg_nll=1.0) == 1.5
    assert MIA_ATTACKS["gradnorm"].computed == "gradient"
    assert MIA_ATTACKS["reference"].computed == "reference"
    # the reference attack's AUC from the retain model's per-example NLL: forget answers whose
    # loss is at the retain model's level score 0, holdout ones higher -> AUC 1
    merged = {
        "f": {"examples": {"a": {"answer": {"avg_nll": 1.0}}, "b": {"answer": {"avg_nll": 2.0}}}},
        "h": {"examples": {"c": {"answer": {"avg_nll": 3.0}}}},
    }
    ref = {"avg_nll": {"forget": {"a": 1.0, "b": 2.0}, "holdout": {"c": 1.0}}}
    assert mia_aucs(merged, "f", "h", ["reference"], ref) == {"reference": 1.0}
    assert mia_aucs(merged, "f", "h", ["reference"]) == {}  # no retain model: left out


def test_gradient_norms_match_autograd(tmp_path):
    from unlearn.eval.scoring import gradient_norms
    from unlearn.models import build_tiny_model, encode_qa, train_tokenizer

    tok = train_tokenizer(["Ann was born in Oslo.", "Where was Ann born?"] * 20, 300)
    model = build_tiny_model(tok, "nano", max_positions=64, seed=0)
    enc = encode_qa(tok, "Where was Ann born?", "Ann was born in Oslo.", 64)
    got = gradient_norms(model, [enc], p=2.0, eos_id=tok.eos_token_id)[0]
    assert all(p.grad is None for p in model.parameters())  # cleared afterwards
    # by autograd directly: mean answer NLL without the final EOS, one backward pass
    ids = torch.tensor([enc["input_ids"]])
    labels = torch.tensor([enc["labels"]])
    logits = model(input_ids=ids).logits[0, :-1]
    targets = labels[0, 1:]
    keep = (targets != -100).nonzero().squeeze(-1)[:-1]  # drop EOS
    nll = -torch.log_softmax(logits[keep], -1).gather(-1, targets[keep, None]).mean()
    model.zero_grad()
    nll.backward()
    want = [float(p.grad.norm(2)) for p in model.parameters() if p.grad is not None]
    assert got == pytest.approx(want, rel=1e-4)
    # L1 norms are larger than L2 norms
    assert sum(gradient_norms(model, [enc], p=1.0)[0]) > sum(got)


def test_new_config_keys_are_checked():
    with pytest.raises(ConfigError, match="privleak_reference_auc: must be in"):
        EvalConfig(privleak_reference_auc=1.5).check()
    with pytest.raises(ConfigError, match="gradnorm_p: must be 1, 2 or .inf"):
        EvalConfig(gradnorm_p=3.0).check()
    with pytest.raises(ConfigError, match="privleak_attack: 'reference' scores against"):
        EvalConfig(privleak_attack="reference").check()
    EvalConfig(mia_attacks=["gradnorm", "reference"], gradnorm_p=float("inf")).check()


def test_new_metrics_on_a_memorizing_model(trained):
    """The nano target memorized forget10; the retain model never saw it."""
    from unlearn.eval import evaluate, retain_reference

    cfg = EvalConfig(max_new_tokens=24, max_examples_per_split=24, batch_size=16,
                     mia_attacks=["loss", "gradnorm", "reference"])  # fmt: skip
    ref = retain_reference(trained.retain, trained.tokenizer, trained.dataset, cfg, use_cache=False)
    m = evaluate(trained.target, trained.tokenizer, trained.dataset, cfg, ref)
    forget, retain = m["splits"]["forget10"], m["splits"]["retain90"]
    for split in (forget, retain):
        assert {"paraphrased_probability", "perturbed_probability", "paraphrased_rouge_l_recall",
                "perturbed_rouge_l_recall", "truth_ratio_prob_mean"} <= set(split)  # fmt: skip
    # it learned the answers, not their paraphrases or the wrong ones
    assert (
        forget["probability"] > forget["paraphrased_probability"] > forget["perturbed_probability"]
    )
    assert forget["rouge_l_recall"] > forget["paraphrased_rouge_l_recall"]
    assert forget["truth_ratio_prob_mean"] < 1.0
    # both new attacks tell the memorized forget rows from holdout rows
    assert m["mia"]["gradnorm"]["auc"] > 0.7
    assert m["mia"]["reference"]["auc"] > 0.7
    assert ref["avg_nll"]["forget"] and ref["avg_nll"]["holdout"]


def test_gradnorm_and_reference_aucs_as_open_unlearning_computes_them():
    """open-unlearning (src/evals/metrics/mia/{gradnorm,reference,utils}.py): per example the mean
    over parameter tensors of the gradient norm (score +norm in its current code), or
    avg_loss(model) - avg_loss(reference); AUC = sklearn's roc_auc_score with forget labelled 0
    and holdout 1. Ours on the same per-example statistics must give the same AUCs."""
    import numpy as np
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    norms = {"f": rng.gamma(2.0, 1.0, (9, 4)), "h": rng.gamma(2.6, 1.0, (6, 4))}
    nll = {"f": rng.gamma(1.5, 1.0, 9), "h": rng.gamma(2.0, 1.0, 6)}
    ref_nll = {"f": rng.gamma(2.0, 1.0, 9), "h": rng.gamma(2.0, 1.0, 6)}
    merged = {
        s: {
            "examples": {
                f"{s}{i}": {
                    "answer": {
                        "avg_nll": float(nll[s][i]),
                        "mia": {"gradnorm": mia_gradnorm(param_grad_norms=norms[s][i].tolist())},
                    }
                }
                for i in range(len(nll[s]))
            }
        }
        for s in ("f", "h")
    }
    role = {"f": "forget", "h": "holdout"}
    ref = {"avg_nll": {role[s]: {f"{s}{i}": float(v) for i, v in enumerate(ref_nll[s])}
                       for s in ("f", "h")}}  # fmt: skip
    ours = mia_aucs(merged, "f", "h", ["gradnorm", "reference"], ref)
    labels = [0] * 9 + [1] * 6
    ou_gradnorm = roc_auc_score(labels, [*norms["f"].mean(1), *norms["h"].mean(1)])
    ou_reference = roc_auc_score(labels, [*(nll["f"] - ref_nll["f"]), *(nll["h"] - ref_nll["h"])])
    assert ours["gradnorm"] == pytest.approx(ou_gradnorm, abs=1e-12)
    assert ours["reference"] == pytest.approx(ou_reference, abs=1e-12)
    assert 0.0 < ou_gradnorm < 1.0 and ou_gradnorm != 0.5  # a comparison that can fail
