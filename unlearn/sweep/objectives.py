"""What a sweep optimizes: objectives among the numbers the in-training evaluation produces.

Names are those of ``unlearn.eval.flat_numbers`` (``forget_quality``, ``model_utility``,
``privleak``, ``score``, ``forget.rouge_l_recall``, ``retain.probability``,
``world_facts.truth_ratio``, ``mia.min_k``, ...) plus derived ones: ``abs_privleak`` = |privleak|
(minimize it for "privleak closest to 0"). Before a sweep starts, ``produced_numbers`` lists what the
evaluation will report every epoch for this dataset and eval config, so an objective it never
produces is refused up front (Tune would otherwise fail on the first report, or Optuna would
silently learn nothing).

Default objectives: forget quality (max) and model utility (max). **Without a retain model**
forget quality and privleak cannot be computed (both compare with the retain-only model); the
default then falls back to the forget split's truth ratio, mean min(TR, 1/TR) (max; near 1 = the
model no longer prefers the true answer over perturbed ones), which is the same reference-free
stand-in the evaluation's best-checkpoint ``score`` uses, and model utility (max).
"""

from __future__ import annotations

import math
from typing import Any

from unlearn.engine.config import RunConfig
from unlearn.engine.evaluation import eval_config
from unlearn.errors import ConfigError
from unlearn.eval.config import EvalConfig
from unlearn.eval.metrics import SPLIT_METRICS, UTILITY_METRICS
from unlearn.eval.plan import plan_splits
from unlearn.methods import build_method

DEFAULT_OBJECTIVES = {"forget_quality": "max", "model_utility": "max"}
NO_RETAIN_OBJECTIVES = {"forget.truth_ratio": "max", "model_utility": "max"}
# derived name -> (source number, function)
DERIVED = {"abs_privleak": ("privleak", abs)}
MODES = ("max", "min")
# need greedy generation
GENERATED = (
    "rouge_l_recall", "rouge_l_f1", "knowmem", "malformed_rate", "distinct_2",
    "answer_perplexity", "gibberish_probability", "fact_recall", "novel_word_rate",
)  # fmt: skip


def produced_numbers(cfg: RunConfig, dataset: Any) -> dict[str, str | None]:
    """Every name an epoch's evaluation of ``cfg`` can report -> None if it will be computed, else
    why not (a name missing from the mapping is not an evaluation number at all)."""
    if cfg.eval is None:
        raise ConfigError("run.eval: a sweep evaluates every epoch; give the run an eval section")
    ecfg: EvalConfig = eval_config(cfg, build_method(cfg.method))
    # the evaluation's own plan (raises here, as it would in every trial, on missing answers)
    plans = plan_splits(dataset, ecfg)
    out: dict[str, str | None] = {}
    forget = next(p.name for p in plans if p.role == "forget")
    holdout = next((p.name for p in plans if p.role == "holdout"), None)
    utility: list[str] = []
    for plan in plans:
        prefix = plan.role if plan.role in ("forget", "retain", "holdout") else plan.name
        for name, metric in SPLIT_METRICS.items():
            if plan.role not in metric.roles:
                continue
            why = plan.skipped.get(name)
            if name in GENERATED and not plan.generate:
                why = "eval.generation is off"
            elif name == "verbmem" and not plan.verbmem:
                why = "eval.generation or eval.verbmem is off"
            elif name == "truth_ratio" and not plan.truth_ratio and why is None:
                why = f"no truth ratio on split {plan.name!r}"
            elif name == "answer_perplexity" and ecfg.fluency_path is None:
                why = "no reference model to read the answers (eval.fluency_model)"
            elif name == "gibberish_probability" and not ecfg.gibberish_classifier:
                why = "no eval.gibberish_classifier"
            out[f"{prefix}.{name}"] = why and f"split {plan.name!r}: {why}"
            if plan.role in ("retain", "options") and name in UTILITY_METRICS:
                utility.append(f"{prefix}.{name}")
    for attack in ecfg.mia_attacks:
        out[f"mia.{attack}"] = None if holdout else f"no holdout split for {forget!r}"
    no_retain = "no retain model (model.retain_model): it compares with the retain-only model"
    if cfg.model.retain_model is None:
        out["forget_quality"] = no_retain
    else:
        out["forget_quality"] = out["forget.truth_ratio"]
    if holdout is None:
        out["privleak"] = f"no holdout split for {forget!r}"
    else:
        out["privleak"] = no_retain if cfg.model.retain_model is None else None
    missing = [u for u in utility if out[u] is not None]
    out["model_utility"] = f"needs {', '.join(missing)}" if missing else None
    # the best-checkpoint score (unlearn.eval.metrics.selection_score): the forget truth ratio
    # stands in for a null forget quality
    f_why = None if out["forget_quality"] is None else out["forget.truth_ratio"]
    if ecfg.score == "model_utility":
        out["score"] = out["model_utility"]
    elif ecfg.score == "forget_quality":
        out["score"] = f_why
    else:
        out["score"] = f_why or out["model_utility"]
    for name, (source, _) in DERIVED.items():
        out[name] = out[source]
    return out


def resolve_objectives(
    requested: dict[str, str] | None, produced: dict[str, str | None], has_retain_model: bool
) -> tuple[dict[str, str], str | None]:
    """The objectives to optimize ({name: "max"|"min"}) and a note when the default fell back."""
    note = None
    if not requested:
        if has_retain_model:
            requested = dict(DEFAULT_OBJECTIVES)
        else:
            requested = dict(NO_RETAIN_OBJECTIVES)
            note = (
                "no retain model: optimizing forget.truth_ratio (max) and model_utility (max) "
                "instead of forget_quality (set model.retain_model for forget quality)"
            )
    for name, mode in requested.items():
        check_metric(name, mode, produced, "objectives")
    return dict(requested), note


def check_metric(name: str, mode: str, produced: dict[str, str | None], where: str) -> None:
    """Refuse a metric the evaluation does not produce, or a mode other than max / min."""
    if mode not in MODES:
        raise ConfigError(f"{where}.{name}: mode must be max or min, got {mode!r}")
    if name not in produced:
        known = ", ".join(sorted(k for k, v in produced.items() if v is None))
        raise ConfigError(
            f"{where}.{name}: the evaluation does not produce {name!r} (it produces: {known})"
        )
    if produced[name] is not None:
        raise ConfigError(
            f"{where}.{name}: the evaluation cannot compute {name!r} here: {produced[name]}"
        )


def derive(metrics: dict[str, Any]) -> dict[str, Any]:
    """``metrics`` plus the derived numbers (``abs_privleak``)."""
    out = dict(metrics)
    for name, (source, fn) in DERIVED.items():
        value = metrics.get(source)
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[name] = fn(value)
    return out


def finite(value: Any) -> bool:
    """A finite number (None, NaN, infinities and bools are not)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
