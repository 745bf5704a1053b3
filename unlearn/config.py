"""Typed configuration: nested dataclasses loaded from YAML with dotted command-line overrides.

A config is a tree of dataclasses. ``load_config(Cls, "run.yaml", ["method.beta=0.2"])`` reads the
YAML, applies the overrides (values parsed as YAML scalars, as Hydra users expect), and builds the
dataclasses, rejecting unknown keys, wrong types and impossible values with a message that names
the dotted key. A dataclass checks its own values in a ``check(self) -> None`` method raising
``ConfigError`` (the loader prefixes the key path). A field whose dataclass depends on a
discriminator (e.g. ``method.name``) declares ``metadata={"choose": fn}`` where ``fn(raw_dict)``
returns the dataclass to build.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import yaml

from unlearn.errors import ConfigError

T = TypeVar("T")
_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``a.b.c=value`` into (["a", "b", "c"], parsed value)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not of the form key.path=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {key}: cannot parse value {raw!r}: {exc}") from None
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of ``data`` with dotted overrides applied (creating sections as needed)."""
    import copy

    out = copy.deepcopy(data)
    for text in overrides:
        path, value = parse_override(text)
        _set(out, path, value, f"override {text!r}")
    return out


def _set(data: dict[str, Any], path: list[str], value: Any, what: str) -> None:
    node = data
    for i, part in enumerate(path[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"{what}: {'.'.join(path[: i + 1])} is a value, not a section")
        node = child
    node[path[-1]] = value


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and return it (ints widen to floats)."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:  # Optional[X]: X's own, more precise error
            return _coerce(value, options[0], key)
        for arg in options:
            try:
                return _coerce(value, arg, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value not in get_args(tp):
            choices = ", ".join(repr(a) for a in get_args(tp))
            raise ConfigError(f"{key}: {value!r} is not one of {choices}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (item_tp, *_) = get_args(tp) or (Any,)
        items = [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        return build(tp, value, key)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true/false, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str) and _FLOAT.fullmatch(value.strip()):
            value = float(value)  # YAML 1.1 reads "1e-5" as a string
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported config type {_type_name(tp)}")


def build(cls: type[T], data: Any, prefix: str = "") -> T:
    """Build dataclass ``cls`` from a mapping, checking keys, types and values."""
    where = prefix or "config"
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        known = ", ".join(sorted(fields))
        dotted = ", ".join(f"{prefix}.{k}" if prefix else k for k in unknown)
        raise ConfigError(f"unknown config key {dotted} (known keys here: {known})")
    kwargs = {}
    for name, f in fields.items():
        key = f"{prefix}.{name}" if prefix else name
        if name not in data:
            if "choose" in f.metadata:  # the discriminator's default picks the dataclass
                kwargs[name] = build(f.metadata["choose"]({}, key), {}, key)
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"missing required config key {key}")
            continue
        value = data[name]
        if "choose" in f.metadata:
            chosen = f.metadata["choose"](value if isinstance(value, dict) else {}, key)
            kwargs[name] = build(chosen, value, key)
        else:
            kwargs[name] = _coerce(value, hints[name], key)
    obj = cls(**kwargs)
    check = getattr(obj, "check", None)
    if callable(check):
        try:
            check()
        except ConfigError as exc:
            msg = str(exc)
            raise ConfigError(f"{prefix}.{msg}" if prefix else msg) from None
    return obj


def to_dict(obj: Any) -> Any:
    """Turn a config dataclass tree back into plain dicts (for saving the resolved config)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, list | tuple):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def read_yaml(path: str | Path, storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """A YAML mapping from a local file or ``s3://`` URL; errors name the file."""
    from unlearn import storage

    location = str(path)
    if not storage.exists(location, storage_options):
        raise ConfigError(f"config file {location} does not exist")
    try:
        loaded = yaml.safe_load(storage.read_bytes(location, storage_options))
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {location} is not valid YAML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {location} is not UTF-8 text") from None
    if loaded is not None and not isinstance(loaded, dict):
        raise ConfigError(f"config file {location} must hold a mapping at top level")
    return loaded or {}


def _get(data: dict[str, Any], path: list[str]) -> Any:
    node: Any = data
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return dataclasses.MISSING
        node = node[part]
    return node


def _nest_shorthand(cls: type, data: dict[str, Any], section: str) -> dict[str, Any]:
    """Move top-level keys that ``cls`` lacks but its ``section`` dataclass has into that section."""
    hints = typing.get_type_hints(cls)
    inner = next((a for a in get_args(hints[section]) if dataclasses.is_dataclass(a)), None)
    inner = inner or hints[section]
    own = {f.name for f in dataclasses.fields(cls)}
    theirs = {f.name for f in dataclasses.fields(inner)}
    moved = {k: v for k, v in data.items() if k not in own and k in theirs}
    if not moved:
        return data
    out = {k: v for k, v in data.items() if k not in moved}
    out[section] = {**moved, **(out.get(section) or {})}
    return out


def load_config(
    cls: type[T],
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    *,
    fixed: dict[str, Any] | None = None,
    shorthand: str | None = None,
    storage_options: dict[str, Any] | None = None,
    defaults: dict[str, Any] | None = None,
) -> T:
    """Load ``cls`` from a YAML file (optional; local or s3://) plus dotted ``overrides``.

    ``defaults``: a mapping (a preset) the file and the overrides apply on top of.

    ``fixed``: dotted keys a command sets itself (``{"method.name": "finetune"}``); a file or
    override giving one of them another value is refused. ``shorthand``: a section whose keys may
    also be written at top level (``forget_split=x`` for ``eval.forget_split=x``).
    """
    data = read_yaml(path, storage_options) if path is not None else {}
    if shorthand is not None:
        data = _nest_shorthand(cls, data, shorthand)
        overrides = [_shorthand_override(cls, o, shorthand) for o in overrides or []]
    if defaults:
        data = _merge(defaults, data)
    data = apply_overrides(data, overrides or [])
    for key, value in (fixed or {}).items():
        found = _get(data, key.split("."))
        if found is not dataclasses.MISSING and found != value:
            raise ConfigError(f"{key}: this command sets it to {value!r}; got {found!r}")
        _set(data, key.split("."), value, f"fixed key {key}")
    return build(cls, data)


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """``top`` over ``base``, section by section."""
    out = dict(base)
    for k, v in top.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _shorthand_override(cls: type, text: str, section: str) -> str:
    key = text.split("=", 1)[0].strip().split(".")[0]
    nested = _nest_shorthand(cls, {key: None}, section)
    return f"{section}.{text.strip()}" if key not in nested else text


def require(condition: bool, key: str, message: str) -> None:
    """Raise ``ConfigError("key: message")`` unless ``condition`` holds (used in ``check``)."""
    if not condition:
        raise ConfigError(f"{key}: {message}")
