"""The search space of a sweep: parameters of the run config, parsed from YAML and checked against
the methods they apply to before anything runs.

A space maps run-config keys to distributions::

    method: {choice: [npo, simnpo, graddiff]}   # method.name
    lr: {loguniform: [1.0e-4, 3.0e-3]}           # train.lr
    epochs: {choice: [2, 3]}                     # train.epochs
    beta: {uniform: [0.05, 0.5]}                 # method.beta (only methods that have a beta)
    simnpo.beta: {uniform: [2.0, 6.0]}           # method.beta of simnpo runs only
    method.retain_loss: nll                      # a fixed value (methods that have the key)
    train.warmup_epochs: {uniform: [0.0, 1.0]}

Keys are dotted run-config paths; the short forms are ``method`` (method.name), any ``train``
field (``lr``, ``epochs``, ``batch_size``, ...) and any method parameter (``beta``, ``alpha``,
``gamma``, ...). A method parameter is sampled only for the chosen methods whose config has it; one
that no chosen method has is refused. ``<method>.<param>`` (``simnpo.beta``) scopes a parameter to
one method, so methods whose parameters live on different scales get their own ranges; a
parameter cannot be both scoped and shared for the same method. Distributions: ``choice`` (a list), ``uniform`` /
``loguniform`` ([low, high], floats), ``int`` ([low, high], inclusive; ``log: true`` samples on a
log scale); a plain value is fixed. Every distribution's ends (every choice) are built into a
real run config for every method it applies to, so a value the run config refuses (beta 0, a
string lr) fails here with that config's own message.

``SearchSpace`` is also Optuna's define-by-run function: called with an Optuna trial (duck-typed:
``suggest_categorical`` / ``suggest_float`` / ``suggest_int``), it samples the method first, then
the parameters that apply to it (a conditional space), and returns the fixed values.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from unlearn.config import build
from unlearn.engine.config import RunConfig, TrainConfig
from unlearn.errors import ConfigError
from unlearn.methods import METHODS

KINDS = ("choice", "uniform", "loguniform", "int", "fixed")
METHOD_KEY = "method.name"
SECTIONS = {f.name for f in dataclasses.fields(RunConfig)}


@dataclass(frozen=True)
class Param:
    """One dimension of the space: its name (the space key: Optuna's parameter, the results'
    ``config/<name>`` column), the dotted run-config key it sets, and its distribution."""

    name: str
    key: str
    kind: str  # one of KINDS
    values: tuple[Any, ...]  # choice: the choices; uniform/loguniform/int: (low, high); fixed: (v,)
    log: bool = False  # int: sample on a log scale
    # method parameters: the methods whose config has this key (None: every run has the key)
    methods: tuple[str, ...] | None = None

    @property
    def sampled(self) -> bool:
        """True unless the value is fixed."""
        return self.kind != "fixed"

    def ends(self) -> tuple[Any, ...]:
        """The values checked before the sweep starts: every choice, or both ends of a range."""
        return self.values

    def contains(self, value: Any) -> bool:
        """Whether ``value`` lies in this dimension (a point to evaluate must)."""
        if self.kind in ("choice", "fixed"):
            return value in self.values
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if self.kind == "int" and not isinstance(value, int):
            return False
        low, high = self.values
        return low <= value <= high

    def describe(self) -> str:
        """``loguniform[0.0001, 0.003]``-style text for reports."""
        if self.kind == "fixed":
            return repr(self.values[0])
        if self.kind == "choice":
            return f"choice{list(self.values)}"
        extra = ", log" if self.log else ""
        return f"{self.kind}[{self.values[0]}, {self.values[1]}{extra}]"


def _method_fields(name: str) -> set[str]:
    return {f.name for f in dataclasses.fields(METHODS[name][0])} - {"name"}


def canonical_key(key: str) -> str:
    """The dotted run-config key for a space key (``lr`` -> ``train.lr``, ``beta`` -> ``method.beta``)."""
    if "." in key:
        return key
    if key == "method":
        return METHOD_KEY
    if key in {f.name for f in dataclasses.fields(TrainConfig)}:
        return f"train.{key}"
    if any(key in _method_fields(m) for m in METHODS):
        return f"method.{key}"
    raise ConfigError(
        f"space.{key}: unknown parameter (write a dotted run-config key such as train.{key} or "
        f"method.{key}; short forms are method, train fields and method parameters)"
    )


def _number(value: Any, where: str) -> float:
    if isinstance(value, str):
        try:
            value = float(value)  # YAML 1.1 reads 1e-4 as a string
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    return value


def canonical_name(key: str) -> str:
    """The space name of a key: short forms expanded, ``<method>.<param>`` kept."""
    head = key.split(".", 1)[0]
    if "." in key and head in METHODS and head not in SECTIONS:
        return key
    return canonical_key(key)


def parse_param(key: str, spec: Any) -> Param:
    """One space entry into a ``Param`` (method applicability is filled in by ``SearchSpace``)."""
    where = f"space.{key}"
    name = canonical_name(key)
    head, _, rest = name.partition(".")
    scoped = head in METHODS and head not in SECTIONS
    dotted = f"method.{rest}" if scoped else name
    methods = (head,) if scoped else None
    if not isinstance(spec, dict):
        if isinstance(spec, list):
            raise ConfigError(
                f"{where}: a list is ambiguous; write {{choice: {spec}}} to sample from it"
            )
        return Param(name, dotted, "fixed", (spec,), methods=methods)
    kinds = [k for k in spec if k in KINDS[:-1]]
    extra = sorted(set(spec) - set(KINDS[:-1]) - {"log"})
    if len(kinds) != 1 or extra:
        raise ConfigError(
            f"{where}: expected exactly one of choice, uniform, loguniform, int (plus log: true "
            f"for int), got keys {sorted(spec)}"
        )
    kind = kinds[0]
    raw = spec[kind]
    if "log" in spec and kind != "int":
        raise ConfigError(f"{where}: log applies to int only (use loguniform for floats)")
    if kind == "choice":
        if not isinstance(raw, list) or not raw:
            raise ConfigError(f"{where}.choice: expected a non-empty list, got {raw!r}")
        if len({repr(v) for v in raw}) != len(raw):
            raise ConfigError(f"{where}.choice: holds a duplicate ({raw})")
        for v in raw:
            if not (v is None or isinstance(v, bool | int | float | str)):
                raise ConfigError(f"{where}.choice: {v!r} is not a plain value")
        return Param(name, dotted, "choice", tuple(raw), methods=methods)
    if not isinstance(raw, list) or len(raw) != 2:
        raise ConfigError(f"{where}.{kind}: expected [low, high], got {raw!r}")
    low, high = (_number(v, f"{where}.{kind}") for v in raw)
    if kind == "int" and not all(isinstance(v, int) for v in (low, high)):
        raise ConfigError(f"{where}.int: bounds must be integers, got {raw!r}")
    if not low < high:
        raise ConfigError(f"{where}.{kind}: low must be below high, got {raw!r}")
    if (kind == "loguniform" or spec.get("log")) and low <= 0:
        raise ConfigError(f"{where}.{kind}: a log scale needs low > 0, got {low}")
    if kind in ("uniform", "loguniform"):
        low, high = float(low), float(high)
    return Param(name, dotted, kind, (low, high), log=bool(spec.get("log", False)), methods=methods)


def _set(raw: dict[str, Any], key: str, value: Any) -> None:
    node = raw
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {} if child is None else child
        if not isinstance(child, dict):
            raise ConfigError(f"space.{key}: {part} is a value in the run config, not a section")
        node = child
    node[parts[-1]] = value


class SearchSpace:
    """A parsed, checked search space over run configs (see the module docstring)."""

    def __init__(self, raw: dict[str, Any], base: dict[str, Any]):
        if not raw:
            raise ConfigError(
                "space: the search space is empty; name at least one parameter to search, e.g. "
                "space: {lr: {loguniform: [1.0e-4, 3.0e-3]}}"
            )
        params = [parse_param(str(k), v) for k, v in raw.items()]
        names = [p.name for p in params]
        dup = sorted({k for k in names if names.count(k) > 1})
        if dup:
            raise ConfigError(f"space: {dup[0]} is given twice (short and dotted forms)")
        self.base = copy.deepcopy(base)
        base_method = (self.base.get("method") or {}).get("name", "npo")
        method = next((p for p in params if p.name == METHOD_KEY), None)
        if method is not None:
            for m in method.values:
                if m not in METHODS:
                    raise ConfigError(
                        f"space.method: unknown method {m!r} (known: {', '.join(sorted(METHODS))})"
                    )
            self.methods: tuple[str, ...] = tuple(method.values)
        else:
            if base_method not in METHODS:
                raise ConfigError(
                    f"run.method.name: unknown method {base_method!r} (known: {', '.join(sorted(METHODS))})"
                )
            self.methods = (base_method,)
        resolved = []
        for p in params:
            if p.methods is not None:  # scoped to one method: <method>.<param>
                (m,) = p.methods
                name = p.key.split(".", 1)[1]
                if m not in self.methods:
                    raise ConfigError(
                        f"space.{p.name}: method {m!r} is not one the sweep chooses "
                        f"({', '.join(self.methods)})"
                    )
                if name not in _method_fields(m):
                    raise ConfigError(
                        f"space.{p.name}: unknown parameter {name!r} for method {m} (its "
                        f"parameters: {', '.join(sorted(_method_fields(m)))})"
                    )
            elif p.key.startswith("method.") and p.key != METHOD_KEY:
                name = p.key.split(".", 1)[1]
                having = tuple(m for m in self.methods if name in _method_fields(m))
                if not having:
                    known = "; ".join(
                        f"{m}: {', '.join(sorted(_method_fields(m)))}" for m in self.methods
                    )
                    raise ConfigError(
                        f"space.{p.key}: unknown parameter {name!r} for the chosen method(s) "
                        f"{', '.join(self.methods)} (their parameters: {known})"
                    )
                p = dataclasses.replace(p, methods=having)
            resolved.append(p)
        for p in resolved:
            if p.methods is not None and p.name != p.key:
                shared = next(
                    (q for q in resolved if q.name == p.key and p.methods[0] in (q.methods or ())),
                    None,
                )
                if shared is not None:
                    raise ConfigError(
                        f"space.{p.name}: {p.methods[0]}'s {p.key} is also set by space.{shared.name}"
                    )
        # the method first: the others depend on it
        self.params: list[Param] = sorted(resolved, key=lambda p: p.name != METHOD_KEY)
        if not any(p.sampled for p in self.params):
            raise ConfigError(
                "space: every entry is a fixed value, so there is nothing to search; give at "
                "least one entry a choice / uniform / loguniform / int distribution"
            )
        self._check_base_method()
        self._check_values()

    @property
    def sampled(self) -> list[Param]:
        """The dimensions with a distribution."""
        return [p for p in self.params if p.sampled]

    def _check_base_method(self) -> None:
        extra = {k for k in (self.base.get("method") or {}) if k != "name"}
        for m in self.methods:
            bad = sorted(extra - _method_fields(m))
            if bad:
                raise ConfigError(
                    f"run.method.{bad[0]}: method {m!r} (chosen by the space) has no parameter "
                    f"{bad[0]!r}; put method-specific values in the space (they apply to the "
                    "methods that have them)"
                )

    def _check_values(self) -> None:
        """Build a run config at every choice and both ends of every range (one parameter at a
        time, the others at the base run's values), for each method."""
        for method in self.methods:
            try:
                self.run_config({METHOD_KEY: method})
            except ConfigError as exc:
                raise ConfigError(f"run (with method {method}): {exc}") from None
            for p in self.params:
                if p.name == METHOD_KEY or not self.applies(p, method):
                    continue
                for v in p.ends():
                    try:
                        self.run_config({METHOD_KEY: method, p.name: v})
                    except ConfigError as exc:
                        raise ConfigError(
                            f"space.{p.name} = {v!r} (method {method}) is refused by the run "
                            f"config: {exc}"
                        ) from None
            self.run_config(self.first_point(method))

    def applies(self, p: Param, method: str) -> bool:
        """Whether parameter ``p`` is set on a run of ``method``."""
        return p.methods is None or method in p.methods

    def first_point(self, method: str) -> dict[str, Any]:
        """A point of the space (first choices, lower ends) for ``method``."""
        point: dict[str, Any] = {METHOD_KEY: method}
        for p in self.params:
            if p.name != METHOD_KEY and self.applies(p, method):
                point[p.name] = p.values[0]
        return point

    def raw_config(self, point: dict[str, Any]) -> dict[str, Any]:
        """The base run config (a mapping) with a point's values set."""
        raw = copy.deepcopy(self.base)
        method = point.get(METHOD_KEY, self.methods[0])
        section = raw.get("method") or {}
        raw["method"] = {**section, "name": method}
        for name, value in point.items():
            if name != METHOD_KEY:
                _set(raw, self._param(name).key, value)
        return raw

    def run_config(self, point: dict[str, Any]) -> RunConfig:
        """The checked ``RunConfig`` of a point."""
        return build(RunConfig, self.raw_config(point))

    def check_point(self, point: dict[str, Any], where: str) -> dict[str, Any]:
        """A user-given point (``search.points``): every key in the space, every value inside it."""
        if not isinstance(point, dict):
            raise ConfigError(f"{where}: expected a mapping of space keys, got {point!r}")
        out = {}
        for key, value in point.items():
            name = canonical_name(str(key))
            p = next((q for q in self.params if q.name == name), None)
            if p is None:
                raise ConfigError(f"{where}.{key}: not a key of the search space")
            if not p.contains(value):
                raise ConfigError(f"{where}.{key}: {value!r} is outside {p.describe()}")
            out[name] = value
        method = out.get(METHOD_KEY, self.methods[0])
        missing = [p.name for p in self.sampled if p.name not in out and self.applies(p, method)]
        if missing:
            raise ConfigError(f"{where}: gives no value for {', '.join(missing)}")
        stray = [k for k in out if k != METHOD_KEY and not self.applies(self._param(k), method)]
        if stray:
            raise ConfigError(f"{where}: {stray[0]} does not apply to method {method!r}")
        fixed = {
            p.name: p.values[0] for p in self.params if not p.sampled and self.applies(p, method)
        }
        try:
            self.run_config({**fixed, **out})
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        return out

    def _param(self, name: str) -> Param:
        found = next((p for p in self.params if p.name == name), None)
        if found is None:
            raise ConfigError(f"{name}: not a key of the search space")
        return found

    def max_epochs(self) -> int:
        """The longest run the space allows (ASHA's max_t)."""
        p = next((q for q in self.params if q.name == "train.epochs"), None)
        if p is None:
            return self.run_config(self.first_point(self.methods[0])).train.epochs
        return int(max(p.values) if p.kind in ("choice", "fixed") else p.values[1])

    def __call__(self, trial: Any) -> dict[str, Any]:
        """Optuna define-by-run: sample the method, then what applies to it; return fixed values."""
        method_param = next((p for p in self.params if p.name == METHOD_KEY), None)
        method = self.methods[0]
        if method_param is not None and method_param.sampled:
            method = trial.suggest_categorical(METHOD_KEY, list(method_param.values))
        fixed: dict[str, Any] = {}
        if method_param is None or not method_param.sampled:
            fixed[METHOD_KEY] = method
        for p in self.params:
            if p.name == METHOD_KEY or not self.applies(p, method):
                continue
            if p.kind == "fixed":
                fixed[p.name] = p.values[0]
            elif p.kind == "choice":
                trial.suggest_categorical(p.name, list(p.values))
            elif p.kind == "int":
                trial.suggest_int(p.name, p.values[0], p.values[1], log=p.log)
            else:
                trial.suggest_float(p.name, p.values[0], p.values[1], log=p.kind == "loguniform")
        return fixed


def is_number(value: Any) -> bool:
    """A finite int or float (not a bool)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
