"""Unlearning methods: one registry, one small file per family.

``METHODS`` maps a config name to (config dataclass, method class). A new method is one file with
its loss (a function of tensors), its config (a ``MethodConfig``) and a class built on the
``Method`` protocol (its streams, what it needs from the engine, ``compute(ctx)``), plus one line
here; ``register_method`` adds one at run time (plugins, tests). The engine never names a method.
"""

from __future__ import annotations

from typing import Any

from unlearn.errors import ConfigError
from unlearn.methods.ceu import CEU, CEUConfig
from unlearn.methods.common import LossOutput, Method, MethodConfig, Stream
from unlearn.methods.finetune import Finetune, FinetuneConfig
from unlearn.methods.ga import GAConfig, GradDiff, GradDiffConfig, GradientAscent
from unlearn.methods.idkdpo import IdkDPO, IdkDPOConfig
from unlearn.methods.npo import NPO, NPOConfig
from unlearn.methods.pdu import PDU, PDUConfig
from unlearn.methods.rmu import RMU, RMUConfig
from unlearn.methods.satimp import SatImp, SatImpConfig
from unlearn.methods.simnpo import SimNPO, SimNPOConfig
from unlearn.methods.ssd import SSD, SSDConfig
from unlearn.methods.undial import UNDIAL, UNDIALConfig
from unlearn.methods.wga import WGA, WGAConfig
from unlearn.models.batching import SeqLogProbs, sequence_logprobs

METHODS: dict[str, tuple[type, type]] = {
    "finetune": (FinetuneConfig, Finetune),
    "ga": (GAConfig, GradientAscent),
    "graddiff": (GradDiffConfig, GradDiff),
    "npo": (NPOConfig, NPO),
    "simnpo": (SimNPOConfig, SimNPO),
    "idkdpo": (IdkDPOConfig, IdkDPO),
    "rmu": (RMUConfig, RMU),
    "ssd": (SSDConfig, SSD),
    "undial": (UNDIALConfig, UNDIAL),
    "wga": (WGAConfig, WGA),
    "satimp": (SatImpConfig, SatImp),
    "ceu": (CEUConfig, CEU),
    "pdu": (PDUConfig, PDU),
}


def register_method(name: str, config_class: type, method_class: type) -> None:
    """Add a method to ``METHODS`` (``method.name: NAME`` in configs then builds it)."""
    if name in METHODS and METHODS[name] != (config_class, method_class):
        raise ConfigError(f"method {name!r} is already registered")
    METHODS[name] = (config_class, method_class)


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
    "Stream",
    "build_method",
    "method_config_class",
    "register_method",
    "sequence_logprobs",
]
