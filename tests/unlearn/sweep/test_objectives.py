"""What the in-training evaluation produces, and the objectives a sweep may optimize."""

from __future__ import annotations

import pytest

from unlearn.config import build
from unlearn.data import Dataset
from unlearn.engine.config import RunConfig
from unlearn.errors import ConfigError
from unlearn.sweep.objectives import derive, produced_numbers, resolve_objectives


def run_cfg(tiny_data, retain=True, **eval_cfg):
    raw = {
        "data": {"path": str(tiny_data), "forget_split": "forget10"},
        "model": {"path": "/m", "retain_model": "/r" if retain else None},
        "output": {"dir": "/o"},
        "eval": eval_cfg,
    }
    return build(RunConfig, raw)


def test_produced_numbers_follow_the_dataset_and_the_eval_config(tiny_data):
    ds = Dataset(tiny_data)
    full = produced_numbers(run_cfg(tiny_data), ds)
    ok = {k for k, v in full.items() if v is None}
    assert {"forget_quality", "model_utility", "privleak", "abs_privleak", "score"} <= ok
    assert {"forget.rouge_l_recall", "forget.truth_ratio", "retain.probability", "mia.min_k"} <= ok
    assert "world_facts.truth_ratio" in ok  # the utility split, by its own name
    no_retain = produced_numbers(run_cfg(tiny_data, retain=False), ds)
    assert "retain model" in no_retain["forget_quality"]
    assert "retain model" in no_retain["privleak"]
    assert no_retain["score"] is None  # the forget truth ratio stands in
    no_gen = produced_numbers(run_cfg(tiny_data, generation=False), ds)
    assert "generation is off" in no_gen["forget.rouge_l_recall"]
    assert "retain.rouge_l_recall" in no_gen["model_utility"]
    assert no_gen["forget_quality"] is None


def test_default_objectives_and_the_no_retain_fallback(tiny_data):
    ds = Dataset(tiny_data)
    produced = produced_numbers(run_cfg(tiny_data), ds)
    assert resolve_objectives(None, produced, True) == (
        {"forget_quality": "max", "model_utility": "max"},
        None,
    )
    produced = produced_numbers(run_cfg(tiny_data, retain=False), ds)
    objectives, note = resolve_objectives(None, produced, False)
    assert objectives == {"forget.truth_ratio": "max", "model_utility": "max"}
    assert "no retain model" in note


@pytest.mark.parametrize(
    "objectives, retain, message",
    [
        ({"forget.bleu": "max"}, True, "does not produce 'forget.bleu'"),
        ({"forget_quality": "max"}, False, "cannot compute 'forget_quality' here: no retain model"),
        ({"abs_privleak": "min"}, False, "cannot compute 'abs_privleak'"),
        ({"model_utility": "up"}, True, "mode must be max or min"),
    ],
)
def test_objectives_the_evaluation_cannot_produce_are_refused(
    tiny_data, objectives, retain, message
):
    produced = produced_numbers(run_cfg(tiny_data, retain=retain), Dataset(tiny_data))
    with pytest.raises(ConfigError, match=message):
        resolve_objectives(objectives, produced, retain)


def test_derive_adds_abs_privleak():
    assert derive({"privleak": -12.5, "score": 0.3})["abs_privleak"] == 12.5
    assert "abs_privleak" not in derive({"privleak": None})
