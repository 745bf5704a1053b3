"""Our losses against open-unlearning's own formulas on the same random logits.

Each ``ou_*`` function below restates, independently of ``unlearn/methods``, what
open-unlearning's trainer computes (src/trainer/unlearn/{grad_diff,simnpo,wga,satimp,ceu,
undial,pdu}.py and src/trainer/utils.py): the Hugging Face token mean for NLL terms, the
CrossEntropyLoss over the flattened shifted batch for the weighted-ascent losses, soft-target
cross entropy for CE-U and UNDIAL. Our methods run through the engine's real ``Context`` with
``method.nll_reduction=token`` (the reduction OU uses) and must give OU's number; where OU
averages over positions the paper does not (UNDIAL's and PDU's prompt / padding positions) the
test shows the two agree exactly on the positions the paper defines and differ otherwise, as the
methods' docstrings say.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from unlearn.config import load_config
from unlearn.engine.config import RunConfig
from unlearn.engine.context import Context
from unlearn.methods import build_method
from unlearn.models.prompting import IGNORE_INDEX as X


def method(*overrides):
    cfg = load_config(RunConfig, None, ["data.path=d", "model.path=m", "output.dir=o", *overrides])
    return build_method(cfg.method)


# forget rows: prompts of 1-3 tokens, answers of 1-4 tokens, right padding (label X)
FORGET_LABELS = [[X, X, 3, 1, 4, X], [X, 2, X, X, X, X], [X, X, X, 0, 5, 6]]
RETAIN_LABELS = [[X, 1, 2, X, X, X], [X, X, 6, 6, 6, 0], [X, 4, X, X, X, X]]


def random_logits(labels, vocab, seed):
    g = torch.Generator().manual_seed(seed)
    return 3.0 * torch.randn(len(labels), len(labels[0]), vocab, generator=g, dtype=torch.float64)


def context(streams, ref=None, normalizers=None):
    """A Context whose model returns fixed logits; streams: name -> (logits [B,T,V], labels)."""
    names = list(streams)
    logits = torch.cat([streams[n][0] for n in names]).float()
    labels = torch.tensor([row for n in names for row in streams[n][1]])
    rows, start = {}, 0
    for n in names:
        rows[n] = slice(start, start + len(streams[n][1]))
        start += len(streams[n][1])
    batch = {
        "input_ids": torch.zeros(labels.shape, dtype=torch.long),
        "attention_mask": torch.ones(labels.shape, dtype=torch.long),
        "labels": labels,
    }
    out = SimpleNamespace(logits=logits)
    reference = None
    if ref is not None:
        ref_all = ref.float()

        def reference(**inputs):
            return SimpleNamespace(logits=ref_all[: inputs["input_ids"].shape[0]])

    return Context(
        lambda **_: out, batch, rows, reference_model=reference, token_normalizers=normalizers
    )


# ---- open-unlearning's computations, restated --------------------------------------------


def shifted(logits, labels):
    lb = torch.tensor(labels)
    return logits[:, :-1].float(), lb[:, 1:]


def ou_hf_nll(logits, labels):
    """HF causal-LM loss: CE over shifted positions, ignore_index -100, mean over valid tokens."""
    z, y = shifted(logits, labels)
    return F.cross_entropy(z.reshape(-1, z.shape[-1]), y.reshape(-1), ignore_index=-100)


def ou_token_ce(logits, labels):
    """utils.compute_wga_loss / satimp: per-position CE (0 at ignored positions), flat, + mask."""
    z, y = shifted(logits, labels)
    ce = F.cross_entropy(
        z.reshape(-1, z.shape[-1]), y.reshape(-1), ignore_index=-100, reduction="none"
    )
    return ce, y.reshape(-1) != -100


def ou_simnpo(forget, retain, beta, delta, gamma, alpha):
    z, y = shifted(*forget)
    per_tok = F.cross_entropy(z.transpose(1, 2), y, ignore_index=-100, reduction="none")
    x = per_tok.sum(-1) / (y != -100).sum(-1) - delta
    f = -F.logsigmoid(beta * x).mean() * 2 / beta
    return gamma * f + alpha * ou_hf_nll(*retain)


def ou_wga(forget, retain, beta, gamma, alpha):
    ce, valid = ou_token_ce(*forget)
    w = torch.exp(-ce).detach() ** beta
    return gamma * -(w * ce)[valid].mean() + alpha * ou_hf_nll(*retain)


def ou_satimp(forget, retain, beta1, beta2, gamma, alpha):
    ce, valid = ou_token_ce(*forget)
    p = torch.exp(-ce).detach()
    return gamma * -((p**beta1) * ((1 - p) ** beta2) * ce)[valid].mean() + alpha * ou_hf_nll(
        *retain
    )


def ou_ceu(logits, labels, n_skip):
    lb = torch.tensor(labels)
    valid = lb != -100
    lb = lb.masked_fill((valid.cumsum(-1) <= n_skip) & valid, -100)
    y = lb[:, 1:]
    z = logits[:, :-1].float()
    keep = y != -100
    zv, yv = z[keep], y[keep]
    target = F.softmax(zv.detach().scatter(-1, yv.unsqueeze(-1), float("-inf")), dim=-1)
    return F.cross_entropy(zv, target)


def ou_undial(logits, ref_logits, labels, beta):
    """Every shifted position counts; a -100 label indexes the vocabulary from its end."""
    z, y = shifted(logits, labels)
    t = ref_logits[:, :-1].float()
    demote = torch.zeros_like(t)
    b = torch.arange(t.shape[0]).view(-1, 1, 1)
    s = torch.arange(t.shape[1]).view(1, -1, 1)
    demote[b, s, y.unsqueeze(-1)] = 1.0
    soft = F.softmax(t - beta * demote, dim=-1)
    return F.cross_entropy(
        z.reshape(-1, z.shape[-1]), soft.reshape(-1, soft.shape[-1]), reduction="none"
    ).mean()


def ou_pdu_forget(logits):
    """PDU's forget loss over all B x T positions of the (unshifted) logits."""
    z = logits.float().reshape(-1, logits.shape[-1])
    return ((z.max(-1).values - z.mean(-1)) ** 2).mean()


# ---- the comparisons ---------------------------------------------------------------------

V = 9


@pytest.fixture
def batch():
    forget = (random_logits(FORGET_LABELS, V, 1), FORGET_LABELS)
    retain = (random_logits(RETAIN_LABELS, V, 2), RETAIN_LABELS)
    return forget, retain


def test_graddiff_token_equals_open_unlearning(batch):
    forget, retain = batch
    ours = method("method.name=graddiff", "method.nll_reduction=token").compute(
        context({"forget": forget, "retain": retain})
    )
    ou = -ou_hf_nll(*forget) + ou_hf_nll(*retain)
    assert ours.loss.item() == pytest.approx(ou.item(), rel=1e-5)
    # the per-example form is a different number on this batch (answers of 3, 1 and 3 tokens)
    example = method("method.name=graddiff").compute(context({"forget": forget, "retain": retain}))
    assert example.loss.item() != pytest.approx(ou.item(), rel=1e-3)


@pytest.mark.parametrize("delta", [0.0, 0.7])
def test_simnpo_equals_open_unlearning(batch, delta):
    forget, retain = batch
    m = method("method.name=simnpo", "method.nll_reduction=token", f"method.delta={delta}")
    ours = m.compute(context({"forget": forget, "retain": retain}))
    ou = ou_simnpo(forget, retain, beta=4.5, delta=delta, gamma=0.125, alpha=1.0)
    assert ours.loss.item() == pytest.approx(ou.item(), rel=1e-5)


def test_wga_equals_open_unlearning(batch):
    forget, retain = batch
    ours = method("method.name=wga", "method.nll_reduction=token").compute(
        context({"forget": forget, "retain": retain})
    )
    assert ours.loss.item() == pytest.approx(ou_wga(forget, retain, 1.0, 1.0, 1.0).item(), rel=1e-5)


def test_satimp_equals_open_unlearning(batch):
    forget, retain = batch
    ours = method("method.name=satimp", "method.nll_reduction=token").compute(
        context({"forget": forget, "retain": retain})
    )
    ou = ou_satimp(forget, retain, beta1=5.0, beta2=1.0, gamma=0.1, alpha=1.0)
    assert ours.loss.item() == pytest.approx(ou.item(), rel=1e-5)


@pytest.mark.parametrize("n_skip", [0, 1, 2])
def test_ceu_equals_open_unlearning(batch, n_skip):
    forget, _ = batch
    m = method(
        "method.name=ceu",
        "method.nll_reduction=token",
        f"method.ignore_first_n_answer_tokens={n_skip}",
    )
    # the token count the loop would all-reduce for this one-micro-batch step
    count = sum(m.token_count("forget", row) for row in FORGET_LABELS)
    ours = m.compute(context({"forget": forget}, normalizers={"forget": float(count)}))
    assert ours.loss.item() == pytest.approx(ou_ceu(*forget, n_skip).item(), rel=1e-5)


def test_undial_equals_open_unlearning_on_answer_positions():
    # a prompt of one token and no padding: every shifted position is an answer position, the
    # only batch shape on which OU's all-position mean is the paper's loss
    labels = [[X, 3, 1, 4, 1], [X, 5, 9, 2, 6]]
    vocab = 128  # OU indexes the vocabulary with -100 at ignored positions: needs V >= 100
    student = random_logits(labels, vocab, 3)
    teacher = random_logits(labels, vocab, 4)
    m = method("method.name=undial", "method.nll_reduction=token")
    ours = m.compute(context({"forget": (student, labels)}, ref=teacher))
    ou = ou_undial(student, teacher, labels, beta=10.0)
    assert ours.loss.item() == pytest.approx(ou.item(), rel=1e-5)
    # with prompt and padding positions OU also distils those (toward the teacher with token
    # V-100 demoted) and divides by B x (T-1): the documented difference
    labels2 = [[X, X, 3, 1, X], [X, 5, 9, 2, 6]]
    ours2 = m.compute(context({"forget": (student, labels2)}, ref=teacher))
    ou2 = ou_undial(student, teacher, labels2, beta=10.0)
    assert ours2.loss.item() != pytest.approx(ou2.item(), rel=1e-3)


def test_pdu_forget_term_against_open_unlearning(batch):
    forget, retain = batch
    m = method("method.name=pdu", "method.nll_reduction=token", "method.retain_loss_eps=0.5")
    m.start({"retain_nll": 1.0})
    ours = m.compute(context({"forget": forget, "retain": retain}))
    # OU's Lagrangian with its forget term restricted to the positions predicting answer tokens
    z, y = shifted(*forget)
    valid = y != -100
    margin = (z.max(-1).values - z.mean(-1)) ** 2
    ou_on_answers = margin[valid].mean() + 1.0 * (ou_hf_nll(*retain) - 0.5)
    assert ours.loss.item() == pytest.approx(ou_on_answers.item(), rel=1e-5)
    # OU itself averages the margin over every position (prompt, padding, the last one)
    ou_all = ou_pdu_forget(forget[0]) + 1.0 * (ou_hf_nll(*retain) - 0.5)
    assert ours.loss.item() != pytest.approx(ou_all.item(), rel=1e-3)
