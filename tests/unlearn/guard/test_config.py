"""GuardConfig: defaults are valid, bad values are named."""

from __future__ import annotations

import pytest

from unlearn.config import build, load_config
from unlearn.errors import ConfigError
from unlearn.guard import GuardConfig


def test_defaults_are_valid_and_outputs_stricter():
    cfg = build(GuardConfig, {})
    for rule in ("cov", "lsn", "sim", "lsn_free"):
        assert getattr(cfg.output, rule) <= getattr(cfg.input, rule)
        assert getattr(cfg.lexical_output, rule) <= getattr(cfg.lexical_input, rule)
    assert cfg.lexical_input.cov <= cfg.input.cov  # lexical-only is stricter


@pytest.mark.parametrize(
    "override, key",
    [
        ("input.cov=1.5", "input.cov"),
        ("output.lsn=2", "output.lsn"),
        ("lexical_input.multi=1", "lexical_input.multi"),
        ("chunk_overlap=5000", "chunk_overlap"),
        ("timeout_ms=0", "timeout_ms"),
        ("bogus=1", "bogus"),
    ],
)
def test_bad_values_name_their_key(override, key):
    with pytest.raises(ConfigError, match=key):
        load_config(GuardConfig, None, [override])
