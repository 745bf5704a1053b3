"""Helpers shared by CLI commands."""

from __future__ import annotations

import json
from typing import Any

from unlearn.errors import ConfigError


def storage_options_arg(text: str | None) -> dict[str, Any] | None:
    """Parse ``--storage-options '{"endpoint_url": ...}'`` (JSON) into a dict."""
    if not text:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--storage-options is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ConfigError("--storage-options must be a JSON object")
    return value
