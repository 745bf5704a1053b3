"""The search space: short forms, method-conditional parameters, validation against the configs."""

from __future__ import annotations

import pytest

from unlearn.errors import ConfigError
from unlearn.sweep.space import SearchSpace

BASE = {
    "data": {"path": "/d"},
    "model": {"path": "/m"},
    "output": {"dir": "/o"},
    "train": {"epochs": 3},
}


class FakeTrial:
    """Duck-typed Optuna trial: picks the first choice / the low end, records the calls."""

    def __init__(self):
        self.calls = {}

    def suggest_categorical(self, name, choices):
        self.calls[name] = choices[-1]
        return choices[-1]

    def suggest_float(self, name, low, high, log=False):
        self.calls[name] = (low, high, log)
        return low

    def suggest_int(self, name, low, high, log=False):
        self.calls[name] = (low, high, log)
        return low


def test_short_forms_and_conditional_method_parameters():
    space = SearchSpace(
        {
            "method": {"choice": ["npo", "ga"]},
            "lr": {"loguniform": ["1e-5", 1e-3]},  # YAML 1.1 string
            "beta": {"uniform": [0.05, 0.5]},
            "epochs": {"int": [1, 4]},
            "alpha": 2.0,
        },
        BASE,
    )
    keys = {p.name: p for p in space.params}
    assert list(keys)[0] == "method.name"
    assert keys["train.lr"].values == (1e-5, 1e-3)
    assert keys["method.beta"].methods == ("npo",)  # ga has no beta
    assert keys["method.alpha"].kind == "fixed"
    assert space.max_epochs() == 4
    trial = FakeTrial()
    fixed = space(trial)  # picks "ga" (last choice): no beta is sampled for it
    assert trial.calls["method.name"] == ["npo", "ga"][-1]
    assert "method.beta" not in trial.calls
    assert trial.calls["train.lr"] == (1e-5, 1e-3, True)
    assert fixed == {"method.alpha": 2.0}
    cfg = space.run_config({"method.name": "npo", "train.lr": 1e-4, "method.beta": 0.2})
    assert (cfg.method.name, cfg.method.beta, cfg.train.lr) == ("npo", 0.2, 1e-4)


def test_method_scoped_ranges():
    space = SearchSpace(
        {
            "method": {"choice": ["npo", "simnpo"]},
            "npo.beta": {"uniform": [0.05, 0.5]},
            "simnpo.beta": {"uniform": [2.0, 6.0]},
        },
        BASE,
    )
    cfg = space.run_config({"method.name": "simnpo", "simnpo.beta": 3.0})
    assert cfg.method.beta == 3.0
    with pytest.raises(ConfigError, match="also set by"):
        SearchSpace(
            {
                "method": {"choice": ["npo"]},
                "beta": 0.1,
                "npo.beta": 0.2,
                "lr": {"uniform": [0.1, 0.2]},
            },
            BASE,
        )


@pytest.mark.parametrize(
    "space, message",
    [
        ({}, "search space is empty"),
        ({"lr": 1e-4}, "nothing to search"),
        (
            {"method": {"choice": ["ga"]}, "beta": {"uniform": [0.1, 0.2]}},
            "unknown parameter 'beta' for the chosen method",
        ),
        (
            {"method": {"choice": ["npo"]}, "ga.alpha": {"uniform": [0.1, 0.2]}},
            "not one the sweep chooses",
        ),
        ({"colour": {"choice": [1, 2]}}, "space.colour: unknown parameter"),
        ({"train.colour": {"choice": [1, 2]}}, "unknown config key train.colour"),
        ({"method": {"choice": ["npo", "nope"]}}, "unknown method 'nope'"),
        ({"beta": {"uniform": [0.0, 0.5]}}, "beta = 0.0 .* must be > 0"),
        ({"lr": {"loguniform": [0, 1e-3]}}, "needs low > 0"),
        ({"lr": {"uniform": [1e-3, 1e-4]}}, "low must be below high"),
        ({"lr": [1e-4, 1e-3]}, "a list is ambiguous"),
        ({"epochs": {"uniform": [1, 3]}}, "expected an integer"),
        ({"lr": {"normal": [0, 1]}}, "expected exactly one of"),
    ],
)
def test_bad_spaces_are_refused_with_the_key(space, message):
    with pytest.raises(ConfigError, match=message):
        SearchSpace(space, BASE)


def test_base_method_parameters_must_fit_every_chosen_method():
    base = {**BASE, "method": {"name": "npo", "beta": 0.1}}
    with pytest.raises(ConfigError, match="run.method.beta: method 'ga'"):
        SearchSpace({"method": {"choice": ["npo", "ga"]}}, base)


def test_points_are_checked_against_the_space():
    space = SearchSpace(
        {
            "method": {"choice": ["npo", "ga"]},
            "lr": {"loguniform": [1e-5, 1e-3]},
            "beta": {"uniform": [0.05, 0.5]},
        },
        BASE,
    )
    assert space.check_point({"method": "npo", "lr": 1e-4, "beta": 0.1}, "p") == {
        "method.name": "npo",
        "train.lr": 1e-4,
        "method.beta": 0.1,
    }
    with pytest.raises(ConfigError, match="outside loguniform"):
        space.check_point({"method": "npo", "lr": 1.0, "beta": 0.1}, "p")
    with pytest.raises(ConfigError, match="gives no value for method.beta"):
        space.check_point({"method": "npo", "lr": 1e-4}, "p")
    with pytest.raises(ConfigError, match="does not apply to method 'ga'"):
        space.check_point({"method": "ga", "lr": 1e-4, "beta": 0.1}, "p")
