"""Evaluation presets: EvalConfig settings of a benchmark as open-unlearning runs it.

``unlearn eval --preset tofu`` / ``--preset muse`` start from ``unlearn/resources/eval_presets/
NAME.yaml``; a ``--config`` file, flags and ``key=value`` overrides apply on top. The ``EvalConfig``
defaults themselves stay small (CPU runs in seconds), as does the demo's preset.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from unlearn.errors import ConfigError

PRESET_DIR = Path(__file__).resolve().parents[1] / "resources" / "eval_presets"


def preset_names() -> list[str]:
    """The shipped presets."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def load_preset(name: str) -> dict[str, Any]:
    """The EvalConfig keys of preset ``name``; an unknown name lists the known ones."""
    names = preset_names()
    if name not in names:
        raise ConfigError(f"--preset: unknown preset {name!r} (known: {', '.join(names)})")
    return yaml.safe_load((PRESET_DIR / f"{name}.yaml").read_text(encoding="utf-8")) or {}
