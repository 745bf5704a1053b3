"""Unlearning methods: one registry, one small file per family.

``METHODS`` maps a config name to (config dataclass, method class). A new method is one file with
its loss (a function of tensors), its config and a class with ``streams``, ``cached_reference``,
``needs_reference_model`` and ``compute(ctx)``, plus one line here.
"""

from __future__ import annotations

from typing import Any

from unlearn.errors import ConfigError
from unlearn.methods.common import LossOutput, Method, MethodConfig, SeqLogProbs, sequence_logprobs
from unlearn.methods.finetune import Finetune, FinetuneConfig
from unlearn.methods.ga import GAConfig, GradDiff, GradDiffConfig, GradientAscent
from unlearn.methods.idkdpo import IdkDPO, IdkDPOConfig
from unlearn.methods.npo import NPO, NPOConfig
from unlearn.methods.rmu import RMU, RMUConfig
from unlearn.methods.simnpo import SimNPO, SimNPOConfig
from unlearn.methods.ssd import SSD, SSDConfig

METHODS: dict[str, tuple[type, type]] = {
    "finetune": (FinetuneConfig, Finetune),
    "ga": (GAConfig, GradientAscent),
    "graddiff": (GradDiffConfig, GradDiff),
    "npo": (NPOConfig, NPO),
    "simnpo": (SimNPOConfig, SimNPO),
    "idkdpo": (IdkDPOConfig, IdkDPO),
    "rmu": (RMUConfig, RMU),
    "ssd": (SSDConfig, SSD),
}


def method_config_class(raw: dict[str, Any], key: str = "method") -> type:
    """The config dataclass for ``raw["name"]`` (used by the typed config loader)."""
    name = raw.get("name", "npo")
    if name not in METHODS:
        raise ConfigError(
            f"{key}.name: unknown method {name!r} (known: {', '.join(sorted(METHODS))})"
        )
    return METHODS[name][0]


def build_method(config: MethodConfig) -> Method:
    """Instantiate the method a config names."""
    if config.name not in METHODS:
        raise ConfigError(
            f"method.name: unknown method {config.name!r} (known: {', '.join(sorted(METHODS))})"
        )
    return METHODS[config.name][1](config)


__all__ = [
    "METHODS",
    "LossOutput",
    "Method",
    "MethodConfig",
    "SeqLogProbs",
    "build_method",
    "method_config_class",
    "sequence_logprobs",
]
