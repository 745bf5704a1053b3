"""Every shipped config loads and validates (a config nobody loads rots)."""

from __future__ import annotations

from pathlib import Path

import pytest

from unlearn.config import load_config
from unlearn.engine.config import RunConfig

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.yaml"))


def config_class(path: Path) -> type:
    """The config a shipped file holds: the demo preset, or a training run."""
    if path.name == "demo.yaml":
        from jobs.demo import DemoConfig

        return DemoConfig
    if path.name.startswith("sweep"):
        from jobs.sweep import SweepConfig

        return SweepConfig
    return RunConfig


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_shipped_config_loads(path):
    cfg = load_config(config_class(path), path, ["out=runs/x"] if path.name == "demo.yaml" else [])
    if isinstance(cfg, RunConfig):
        assert cfg.data.path and cfg.model.path and cfg.output.dir
    if path.name.startswith("sweep"):
        from unlearn.sweep import SearchSpace

        space = SearchSpace(cfg.space, {**cfg.run, "output": {"dir": "runs/x"}})  # a valid space
        for i, point in enumerate(cfg.search.points):
            space.check_point(point, f"search.points[{i}]")
    assert path.read_text().startswith("#")  # each starts with how to launch it
    assert "unlearn " in path.read_text().splitlines()[0] + "".join(
        path.read_text().splitlines()[1:5]
    )


def test_there_are_examples():
    assert {"npo_tiny.yaml", "demo.yaml"} <= {p.name for p in EXAMPLES}


def test_the_demo_loads_its_preset_from_examples():
    from jobs.demo import PRESET, DemoConfig

    assert PRESET.name == "demo.yaml" and PRESET in EXAMPLES
    cfg = load_config(DemoConfig, PRESET, ["out=runs/x"])
    assert cfg.finetune.epochs == 40 and set(cfg.methods) == {"npo", "ga"}
    assert cfg.methods["npo"]["retain_loss"] == "kl" and cfg.curves == ["npo"]
    assert cfg.unlearn.stop_at == "retain_equivalent"
