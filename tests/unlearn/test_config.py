"""Typed configuration: YAML + dotted overrides, rejecting bad keys, types and values."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from unlearn.config import load_config, require, to_dict
from unlearn.errors import ConfigError


@dataclass
class Optim:
    lr: float = 1e-5
    epochs: int = 1
    schedule: Literal["constant", "linear", "cosine"] = "linear"

    def check(self) -> None:
        require(self.lr > 0, "lr", f"must be positive, got {self.lr}")


@dataclass
class Run:
    name: str = "run"
    tags: list[str] = field(default_factory=list)
    optim: Optim = field(default_factory=Optim)
    seed: int | None = None


def test_yaml_and_dotted_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("name: a\noptim:\n  lr: 0.001\n")
    cfg = load_config(Run, p, ["optim.epochs=3", "optim.lr=2e-4", "tags=[x, y]", "seed=7"])
    assert cfg.name == "a" and cfg.optim.lr == 2e-4 and cfg.optim.epochs == 3
    assert cfg.tags == ["x", "y"] and cfg.seed == 7
    assert to_dict(cfg)["optim"] == {"lr": 2e-4, "epochs": 3, "schedule": "linear"}


def test_int_widens_to_float():
    assert load_config(Run, None, ["optim.lr=1"]).optim.lr == 1.0


@pytest.mark.parametrize(
    "override, message",
    [
        ("optim.betas=0.9", r"unknown config key optim\.betas"),
        ("optimizer.lr=1", r"unknown config key optimizer"),
        ("optim.epochs=two", r"optim\.epochs: expected an integer, got 'two'"),
        ("optim.epochs=1.5", r"optim\.epochs: expected an integer"),
        ("optim.lr=-1", r"optim\.lr: must be positive, got -1"),
        ("optim.schedule=step", r"optim\.schedule: 'step' is not one of"),
        ("name.x=1", r"name: expected a string"),
        ("noequals", r"not of the form key\.path=value"),
    ],
)
def test_bad_config_names_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(Run, None, [override])


def test_missing_and_invalid_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(Run, tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping at top level"):
        load_config(Run, tmp_path / "bad.yaml")
