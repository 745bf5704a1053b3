"""Every shipped config loads and validates (a config nobody loads rots)."""

from __future__ import annotations

from pathlib import Path

import pytest

from unlearn.config import load_config
from unlearn.engine.config import RunConfig

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_shipped_config_loads(path):
    cfg = load_config(RunConfig, path)
    assert cfg.data.path and cfg.model.path and cfg.output.dir
    assert path.read_text().startswith("#")  # each starts with how to launch it
    assert "unlearn " in path.read_text().splitlines()[0] + "".join(
        path.read_text().splitlines()[1:5]
    )


def test_there_are_examples():
    assert any(p.name == "npo_tiny.yaml" for p in EXAMPLES)
