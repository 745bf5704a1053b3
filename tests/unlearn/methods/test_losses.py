"""Each loss on a hand-computable case, and the method registry."""

from __future__ import annotations

import math

import pytest
import torch

from unlearn.config import load_config
from unlearn.engine.config import RunConfig
from unlearn.errors import ConfigError
from unlearn.methods import METHODS, build_method, sequence_logprobs
from unlearn.methods.common import kl_loss, nll_loss
from unlearn.methods.idkdpo import IdkDPOConfig, dpo_loss, idk_answer_for, idk_answers
from unlearn.methods.npo import npo_loss
from unlearn.methods.rmu import control_vector, masked_mse
from unlearn.methods.simnpo import simnpo_loss
from unlearn.methods.ssd import ssd_dampen
from unlearn.models.prompting import IGNORE_INDEX as X


def log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x))


def test_sequence_logprobs_by_hand():
    # vocab 2; position t predicts label t+1. Row 0: labels [X, 1, 0] -> log p(1|pos0) + log p(0|pos1)
    logits = torch.tensor([[[0.0, math.log(3.0)], [math.log(4.0), 0.0], [5.0, 5.0]]])
    labels = torch.tensor([[X, 1, 0]])
    lp = sequence_logprobs(logits, labels)
    expected = math.log(3 / 4) + math.log(4 / 5)
    assert lp.sum.item() == pytest.approx(expected, rel=1e-6)
    assert lp.count.tolist() == [2]
    assert lp.mean.item() == pytest.approx(expected / 2, rel=1e-6)
    with pytest.raises(ValueError, match="disagree"):
        sequence_logprobs(logits, torch.tensor([[X, 1]]))


def test_nll_is_mean_of_per_example_means():
    logits = torch.zeros(2, 4, 2)  # uniform: every token log 1/2
    labels = torch.tensor([[X, 1, X, X], [X, 0, 1, 1]])  # 1 and 3 answer tokens
    assert nll_loss(sequence_logprobs(logits, labels)).item() == pytest.approx(math.log(2))


def test_npo_loss_formula():
    got = npo_loss(torch.tensor([-2.0, -5.0]), torch.tensor([-1.0, -5.0]), beta=0.1)
    assert got[0].item() == pytest.approx(-(2 / 0.1) * log_sigmoid(0.1), rel=1e-6)
    assert got[1].item() == pytest.approx(-(2 / 0.1) * log_sigmoid(0.0), rel=1e-6)  # = 20 log 2
    # bounded below by 0 and decreasing as the model's likelihood falls under the reference's
    assert npo_loss(torch.tensor([-100.0]), torch.tensor([0.0]), 0.1).item() < 1e-3


def test_simnpo_loss_formula():
    # open-unlearning's form: -(2/beta) log sigmoid(beta * (avgNLL - delta))
    got = simnpo_loss(torch.tensor([-2.0]), beta=4.5, delta=0.5)
    assert got.item() == pytest.approx(-(2 / 4.5) * log_sigmoid(4.5 * (2.0 - 0.5)), rel=1e-6)


def test_dpo_loss_formula():
    got = dpo_loss(
        torch.tensor([-3.0]),
        torch.tensor([-4.0]),
        torch.tensor([-2.0]),
        torch.tensor([-1.0]),
        beta=0.1,
    )
    margin = (-3.0 + 4.0) - (-2.0 + 1.0)  # 2
    assert got.item() == pytest.approx(-(2 / 0.1) * log_sigmoid(0.1 * margin), rel=1e-6)


def test_kl_loss_by_hand():
    labels = torch.tensor([[X, 0, 0]])
    same = torch.randn(1, 3, 5)
    assert kl_loss(same, same, labels).item() == pytest.approx(0.0, abs=1e-6)
    ref = torch.tensor([[[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]]])  # uniform
    model = torch.tensor(
        [[[math.log(3.0), 0.0], [0.0, 0.0], [9.0, 9.0]]]
    )  # p = (3/4, 1/4) at pos 0
    labels = torch.tensor([[X, 1, X]])  # only position 0 counts
    expected = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
    assert kl_loss(model, ref, labels).item() == pytest.approx(expected, rel=1e-6)


def test_masked_mse_by_hand():
    hidden = torch.tensor([[[1.0, 3.0], [2.0, 2.0], [7.0, 7.0]]])
    target = torch.tensor([1.0, 1.0])
    labels = torch.tensor([[X, 5, 6]])  # positions 0 and 1 produce answer tokens
    # pos0: mean((0, 2)^2) = 2; pos1: mean((1, 1)^2) = 1 -> 1.5
    assert masked_mse(hidden, target, labels).item() == pytest.approx(1.5)
    v = control_vector(8, 6.5, seed=0)
    assert v.norm().item() == pytest.approx(6.5, rel=1e-5)
    assert torch.equal(v, control_vector(8, 6.5, seed=0))


def test_ssd_dampen_by_hand():
    param = torch.tensor([1.0, 2.0, 3.0, 4.0])
    imp_full = torch.tensor([1.0, 1.0, 0.0, 2.0])
    imp_forget = torch.tensor([5.0, 20.0, 1.0, 30.0])
    new, n = ssd_dampen(param, imp_full, imp_forget, alpha=10.0, lam=1.0)
    # selected where forget > 10 x full: entries 1 (20 > 10), 2 (1 > 0), 3 (30 > 20)
    assert n == 3
    assert new.tolist() == pytest.approx([1.0, 2.0 * (1 / 20), 3.0 * 0.0, 4.0 * (2 / 30)])


def test_idk_answers_are_shipped_and_stable():
    answers = idk_answers()
    assert len(answers) == 16 and answers[0] == "I'm not sure."
    # pinned: a cached reference of IdkDPO depends on which refusal each id gets
    assert idk_answer_for("syn-00001-work") == "I'm afraid I don't know."  # sha256 % 16 = 10
    assert idk_answer_for("tofu-0007") == "I have no information about that."  # = 8
    assert len({idk_answer_for(f"id-{i}") for i in range(100)}) > 5
    row = {"id": "syn-00001-work", "question": "Q?", "answer": "A real fact."}
    idk = next(st for st in build_method(IdkDPOConfig()).streams if st.name == "idk")
    assert idk.split == "forget" and idk.transform(row) == {**row, "answer": answers[10]}


def test_registry_builds_every_method_from_config():
    for name in METHODS:
        cfg = load_config(
            RunConfig, None, ["data.path=d", "model.path=m", "output.dir=o", f"method.name={name}"]
        )
        method = build_method(cfg.method)
        assert cfg.method.name == name
        assert method.streams and all(
            st.split in {"forget", "retain", "train"} for st in method.streams
        )
        primary = [st for st in method.streams if st.primary]
        assert primary and len({st.split for st in primary}) == 1  # one primary split per method


@pytest.mark.parametrize(
    "override, message",
    [
        ("method.name=sgd", r"unknown method 'sgd' \(known: .*npo"),
        ("train.lr=-1e-5", r"train\.lr: must be > 0"),
        ("method.beta=0", r"method\.beta: must be > 0"),
        ("method.beta=-0.5", r"method\.beta: must be > 0"),
        ("method.gamma=-1", r"method\.gamma: must be >= 0"),
        ("method.steering_coeff=1", r"unknown config key method\.steering_coeff"),
        ("train.batch_size=6", r"train\.batch_size: 6 must be a multiple"),
    ],
)
def test_bad_run_config_names_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(RunConfig, None, ["data.path=d", "model.path=m", "output.dir=o", override])


class StubContext:
    """A StepContext over fixed log-probs (uniform over 2 tokens: every answer token log 1/2)."""

    def __init__(self, answer_tokens: dict[str, list[int]]):
        self.answer_tokens = answer_tokens

    def logprobs(self, stream):
        n = max(self.answer_tokens[stream]) + 1
        labels = torch.full((len(self.answer_tokens[stream]), n + 1), X)
        for row, k in enumerate(self.answer_tokens[stream]):
            labels[row, 1 : k + 1] = 0
        return sequence_logprobs(torch.zeros(labels.shape[0], n + 1, 2), labels)


def test_ga_and_graddiff_by_hand():
    ctx = StubContext({"forget": [2, 4], "retain": [1]})
    ga = build_method(
        load_config(
            RunConfig,
            None,
            ["data.path=d", "model.path=m", "output.dir=o", "method.name=ga", "method.gamma=2"],
        ).method
    )
    assert ga.compute(ctx).loss.item() == pytest.approx(-2 * math.log(2))  # -gamma * NLL
    gd = build_method(
        load_config(
            RunConfig,
            None,
            [
                "data.path=d",
                "model.path=m",
                "output.dir=o",
                "method.name=graddiff",
                "method.alpha=0.5",
            ],
        ).method
    )
    out = gd.compute(ctx)
    assert out.loss.item() == pytest.approx(-math.log(2) + 0.5 * math.log(2))
    assert out.terms == pytest.approx({"forget_loss": -math.log(2), "retain_loss": math.log(2)})
