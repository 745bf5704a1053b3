"""Hand-computed losses of SimNPO (OU's margin), UNDIAL, WGA, SatImp, CE-U, PDU, and the token
reduction, through the engine's real ``Context`` on fixed logits (no model)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from unlearn.config import load_config
from unlearn.engine.config import RunConfig
from unlearn.engine.context import Context
from unlearn.errors import ConfigError
from unlearn.methods import build_method
from unlearn.methods.ceu import ceu_token_loss, skip_first_answer_tokens
from unlearn.methods.common import answer_mean, nll_term
from unlearn.methods.pdu import dual_update, logit_margin_flattening
from unlearn.methods.satimp import satimp_token_loss
from unlearn.methods.simnpo import simnpo_loss
from unlearn.methods.undial import undial_token_loss
from unlearn.methods.wga import wga_token_loss
from unlearn.models.prompting import IGNORE_INDEX as X

LN2 = math.log(2.0)


def method(*overrides):
    cfg = load_config(RunConfig, None, ["data.path=d", "model.path=m", "output.dir=o", *overrides])
    return build_method(cfg.method)


def two_way(p: float) -> list[float]:
    """Logits over a 2-token vocabulary giving token 0 probability p."""
    return [math.log(p), math.log(1 - p)]


def ctx_for(streams: dict[str, tuple[list[list[list[float]]], list[list[int]]]], ref=None, **kw):
    """A Context whose "model" returns fixed logits: streams name -> (logits [B][T][V], labels)."""
    logits, labels, rows, start = [], [], {}, 0
    for name, (lg, lb) in streams.items():
        rows[name] = slice(start, start + len(lb))
        start += len(lb)
        logits += lg
        labels += lb
    out = SimpleNamespace(logits=torch.tensor(logits, requires_grad=True))
    batch = {
        "input_ids": torch.zeros(len(labels), len(labels[0]), dtype=torch.long),
        "attention_mask": torch.ones(len(labels), len(labels[0]), dtype=torch.long),
        "labels": torch.tensor(labels),
    }
    reference = None
    if ref is not None:
        ref_logits = torch.tensor(ref)

        def reference(**inputs):
            return SimpleNamespace(logits=ref_logits[: inputs["input_ids"].shape[0]])

    return Context(lambda **_: out, batch, rows, reference_model=reference, **kw), out


def log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x))


def test_simnpo_follows_open_unlearning_margin():
    # one example with answer-token probabilities 1/2 and 1/4: mean NLL = 1.5 ln 2
    avg_nll = 1.5 * LN2
    beta, delta = 4.5, 0.5  # OU's beta, a non-zero delta
    ours = simnpo_loss(torch.tensor([-avg_nll]), beta=beta, delta=delta).item()
    ou = -(2 / beta) * log_sigmoid(beta * (avg_nll - delta))  # OU / SimNPO authors' code
    assert ours == pytest.approx(ou, rel=1e-6)
    assert ours == pytest.approx(0.037547, rel=1e-4)  # by hand: (2/4.5) ln(1 + e^-2.42874)
    # the old parameterization (margin outside the product) differs when delta != 0 ...
    assert ours != pytest.approx(-(2 / beta) * log_sigmoid(beta * avg_nll - delta), rel=1e-2)
    # ... and equals it with the paper's gamma = beta * delta
    paper = -(2 / beta) * log_sigmoid(beta * avg_nll - beta * delta)
    assert ours == pytest.approx(paper, rel=1e-6)


def test_simnpo_method_with_open_unlearning_defaults():
    m = method("method.name=simnpo", "method.delta=0.5")
    assert (m.config.beta, m.config.gamma, m.config.alpha) == (4.5, 0.125, 1.0)
    forget = ([[two_way(0.5), two_way(0.25), two_way(0.9)]], [[X, 0, 0]])
    retain = ([[two_way(0.5), two_way(0.5), two_way(0.5)]], [[X, 0, X]])
    ctx, _ = ctx_for({"forget": forget, "retain": retain})
    out = m.compute(ctx)
    expected_forget = -(2 / 4.5) * log_sigmoid(4.5 * (1.5 * LN2 - 0.5))
    assert out.terms["forget_loss"] == pytest.approx(expected_forget, rel=1e-5)
    assert out.loss.item() == pytest.approx(0.125 * expected_forget + LN2, rel=1e-5)


def test_token_and_example_reductions_by_hand():
    # example A: 1 answer token (p = 1/2); example B: 3 tokens (p = 1/4 each)
    lg = [
        [two_way(0.5), two_way(0.5), two_way(0.5), two_way(0.5)],
        [two_way(0.25), two_way(0.25), two_way(0.25), two_way(0.25)],
    ]
    labels = [[X, 0, X, X], [X, 0, 0, 0]]
    ctx, _ = ctx_for({"forget": (lg, labels)})
    a, b = LN2, math.log(4.0)
    assert nll_term(ctx, "forget", "example").item() == pytest.approx((a + b) / 2)
    assert nll_term(ctx, "forget", "token").item() == pytest.approx((a + 3 * b) / 4)
    # inside a step of 2 micro-batches x 2 workers holding 16 answer tokens in all, this
    # micro-batch's token sum counts for 1/16 of the global mean, times the 4 micro-batches the
    # backend averages: normalizer 16 / 4 = 4 -> the same number here, by construction
    ctx4, _ = ctx_for({"forget": (lg, labels)}, token_normalizers={"forget": 4.0})
    assert nll_term(ctx4, "forget", "token").item() == pytest.approx((a + 3 * b) / 4)
    ctx8, _ = ctx_for({"forget": (lg, labels)}, token_normalizers={"forget": 8.0})
    assert nll_term(ctx8, "forget", "token").item() == pytest.approx((a + 3 * b) / 8)
    with pytest.raises(ValueError, match="nll_reduction"):
        answer_mean(ctx, "forget", torch.zeros(2, 3), torch.ones(2, 3, dtype=torch.bool), "sum")


def test_graddiff_token_reduction_matches_open_unlearning_on_one_batch():
    m = method("method.name=graddiff", "method.nll_reduction=token")
    forget = ([[two_way(0.5)] * 4, [two_way(0.25)] * 4], [[X, 0, X, X], [X, 0, 0, 0]])
    retain = ([[two_way(0.5)] * 4, [two_way(0.5)] * 4], [[X, 0, 0, X], [X, 0, X, X]])
    ctx, _ = ctx_for({"forget": forget, "retain": retain})
    out = m.compute(ctx)
    # HF token mean over the batch: forget (ln2 + 3 ln4) / 4, retain 3 ln2 / 3
    assert out.terms["forget_loss"] == pytest.approx(-(LN2 + 3 * math.log(4)) / 4)
    assert out.terms["retain_loss"] == pytest.approx(LN2)


def test_undial_by_hand():
    # one example, labels [X, 0, 1]: position 0 predicts token 0, position 1 predicts token 1
    student = [[[0.0, 0.0], [math.log(3.0), 0.0], [0.0, 0.0]]]
    teacher = [[[math.log(4.0), 0.0], [0.0, 0.0], [0.0, 0.0]]]
    labels = torch.tensor([[X, 0, 1]])
    per, mask = undial_token_loss(torch.tensor(student), torch.tensor(teacher), labels, LN2)
    # pos 0: teacher (4:1) with token 0 demoted by ln 2 -> q = (2/3, 1/3); p = (1/2, 1/2): CE = ln 2
    # pos 1: teacher (1:1) with token 1 demoted -> q = (2/3, 1/3); p = (3/4, 1/4)
    pos1 = -(2 / 3) * math.log(0.75) - (1 / 3) * math.log(0.25)
    assert per[0, 0].item() == pytest.approx(LN2, rel=1e-6)
    assert per[0, 1].item() == pytest.approx(pos1, rel=1e-6)
    assert mask.tolist() == [[True, True]]
    m = method("method.name=undial", "method.beta=0.6931471805599453")
    assert m.needs_reference_model and [st.name for st in m.streams] == ["forget"]  # alpha 0
    ctx, _ = ctx_for({"forget": (student, [[X, 0, 1]])}, ref=teacher)
    assert m.compute(ctx).loss.item() == pytest.approx((LN2 + pos1) / 2, rel=1e-6)
    assert (LN2 + pos1) / 2 == pytest.approx(0.673517, rel=1e-5)
    defaults = method("method.name=undial").config
    assert (defaults.beta, defaults.alpha, defaults.gamma) == (10.0, 0.0, 1.0)


def test_wga_by_hand():
    lp = torch.log(torch.tensor([[0.5, 0.25]]))
    got = wga_token_loss(lp, beta=1.0)
    assert got.tolist()[0] == pytest.approx([0.5 * math.log(0.5), 0.25 * math.log(0.25)])
    assert wga_token_loss(lp, beta=2.0)[0, 1].item() == pytest.approx(0.0625 * math.log(0.25))
    # the weight is detached: d/dlogp of w * logp is w (not w + w * beta * logp)
    x = lp.clone().requires_grad_(True)
    wga_token_loss(x, beta=1.0).sum().backward()
    assert x.grad.tolist()[0] == pytest.approx([0.5, 0.25])
    m = method("method.name=wga")
    assert (m.config.beta, m.config.alpha, m.config.gamma) == (1.0, 1.0, 1.0)
    forget = ([[two_way(0.5), two_way(0.25), two_way(0.5)]], [[X, 0, 0]])
    retain = ([[two_way(0.5)] * 3], [[X, 0, X]])
    out = m.compute(ctx_for({"forget": forget, "retain": retain})[0])
    f = (0.5 * math.log(0.5) + 0.25 * math.log(0.25)) / 2  # = -ln2 / 2
    assert out.terms["forget_loss"] == pytest.approx(f, rel=1e-6)
    assert out.loss.item() == pytest.approx(f + LN2, rel=1e-6)


def test_satimp_by_hand():
    lp = torch.log(torch.tensor([[0.5, 0.25]]))
    got = satimp_token_loss(lp, beta1=5.0, beta2=1.0).tolist()[0]
    assert got == pytest.approx(
        [(0.5**5) * 0.5 * math.log(0.5), (0.25**5) * 0.75 * math.log(0.25)], rel=1e-6
    )
    m = method("method.name=satimp")
    assert (m.config.beta1, m.config.beta2, m.config.gamma, m.config.alpha) == (5, 1, 0.1, 1)
    forget = ([[two_way(0.5), two_way(0.25), two_way(0.5)]], [[X, 0, 0]])
    retain = ([[two_way(0.5)] * 3], [[X, 0, X]])
    out = m.compute(ctx_for({"forget": forget, "retain": retain})[0])
    f = (got[0] + got[1]) / 2
    assert out.loss.item() == pytest.approx(0.1 * f + LN2, rel=1e-6)


def test_ceu_by_hand():
    # position 0: p = (1/2, 1/4, 1/4), answer 0 -> q = (0, 1/2, 1/2): CE = ln 4
    # position 1: p = (1/6, 2/6, 3/6), answer 1 -> q = (1/4, 0, 3/4): CE = ln6/4 + 3 ln2/4
    logits = torch.tensor(
        [[[math.log(2.0), 0.0, 0.0], [0.0, math.log(2.0), math.log(3.0)], [0.0, 0.0, 0.0]]],
        requires_grad=True,
    )
    labels = torch.tensor([[X, 0, 1]])
    per, mask = ceu_token_loss(logits, labels)
    pos1 = math.log(6) / 4 + 3 * LN2 / 4
    assert per[0].tolist() == pytest.approx([math.log(4), pos1], rel=1e-6)
    # its gradient is p - q: the answer token pushed down, the rest toward the model's own belief
    per[0, 0].backward()
    assert logits.grad[0, 0].tolist() == pytest.approx([0.5, -0.25, -0.25], abs=1e-6)
    assert skip_first_answer_tokens(mask, 1).tolist() == [[False, True]]
    m = method("method.name=ceu")  # OU default: the first answer token is not unlearned
    assert m.config.ignore_first_n_answer_tokens == 1
    ctx, _ = ctx_for({"forget": (logits.detach().tolist(), [[X, 0, 1]])})
    assert m.compute(ctx).loss.item() == pytest.approx(pos1, rel=1e-6)
    assert m.token_count("forget", [X, 0, 1]) == 1  # what the token mean divides by
    tok = method("method.name=ceu", "method.nll_reduction=token")
    ctx, _ = ctx_for({"forget": (logits.detach().tolist(), [[X, 0, 1]])},
                     token_normalizers={"forget": 1.0})  # fmt: skip
    assert tok.compute(ctx).loss.item() == pytest.approx(pos1, rel=1e-6)


def test_pdu_by_hand():
    lm = logit_margin_flattening(torch.tensor([[[3.0, 0.0, 0.0], [1.0, 1.0, 1.0]]]))
    assert lm.tolist() == [[4.0, 0.0]]  # (max - mean)^2: (3 - 1)^2, and 0 when uniform
    assert dual_update(1.0, retain_loss=2.5, eps=2.0, step_size=1.0) == 1.5
    assert dual_update(1.5, retain_loss=0.5, eps=2.0, step_size=1.0) == 0.0  # projected at 0
    m = method("method.name=pdu", "method.dual_warmup_epochs=1", "method.retain_loss_tolerance=0.5")
    assert (m.config.primal_dual, m.config.dual_step_size, m.config.dual_update_upon) == (
        True, 1.0, "step",
    )  # fmt: skip
    m.start({"forget_nll": 1.0, "retain_nll": 2.0})
    assert m.eps == pytest.approx(3.0)  # (1 + tolerance) x the starting retain NLL
    forget = ([[[3.0, 0.0], [1.0, 1.0], [0.0, 0.0]]], [[X, 0, 0]])
    retain = ([[two_way(0.5)] * 3], [[X, 0, X]])
    out = m.compute(ctx_for({"forget": forget, "retain": retain})[0])
    # forget: positions 0 and 1: (3 - 1.5)^2 = 2.25 and 0 -> 1.125; lambda 1 x (ln2 - 3)
    assert out.loss.item() == pytest.approx(1.125 + (LN2 - 3.0), rel=1e-6)
    assert out.terms["retain_weight"] == 1.0
    m.end_step({"epoch": 0, "retain_loss": 4.0}, epoch_done=False)
    assert m.lam == 1.0  # still warming up (epoch 0 of 1)
    m.end_step({"epoch": 1, "retain_loss": 4.0}, epoch_done=False)
    assert m.lam == 2.0  # 1 + 1 x (4 - 3)
    assert m.state_dict() == {"lambda": 2.0, "eps": 3.0}
    again = method("method.name=pdu")
    again.load_state_dict(m.state_dict())
    assert (again.lam, again.eps) == (2.0, 3.0)
    ep = method("method.name=pdu", "method.dual_update_upon=epoch", "method.dual_warmup_epochs=0",
                "method.retain_loss_eps=1.0")  # fmt: skip
    ep.start({"retain_nll": 9.0})
    assert ep.eps == 1.0  # configured: not derived
    ep.end_step({"epoch": 0, "retain_loss": 2.0}, epoch_done=False)
    ep.end_step({"epoch": 0, "retain_loss": 4.0}, epoch_done=True)
    assert ep.lam == pytest.approx(1.0 + (3.0 - 1.0))  # the epoch's mean retain loss


@pytest.mark.parametrize(
    "override, message",
    [
        ("method.name=pdu\nmethod.retain_loss_eps=-1", r"method\.retain_loss_eps: must be > 0"),
        ("method.name=ceu\nmethod.ignore_first_n_answer_tokens=-1", r"must be >= 0"),
        ("method.name=undial\nmethod.beta=0", r"method\.beta: must be > 0"),
        ("method.name=satimp\nmethod.beta1=-1", r"method\.beta1: must be >= 0"),
        ("method.name=ssd\nmethod.nll_reduction=token", r"method\.nll_reduction: SSD"),
        ("method.name=ga\nmethod.nll_reduction=sum", r"'sum' is not one of 'example', 'token'"),
    ],
)
def test_bad_parameters_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        method(*override.split("\n"))
