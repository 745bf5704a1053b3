"""Evaluation plans: which splits, in which role, and which rows each rank evaluates.

A plan names the split, its role (forget / retain / holdout / options), its content hash and this
rank's rows (rows ``rank, rank + W, ...``), and what to compute on them (truth ratio, generation,
VerbMem). Splits come from the eval config and the dataset's recorded pairs
(``Dataset.paired_split``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from unlearn.errors import ConfigError, DataError
from unlearn.eval.config import DEFAULT_UTILITY_SPLITS, RETAIN_PERTURBED, EvalConfig

PURPOSES = ("metrics", "reference")
# Roles: forget (forgetting is measured), retain (utility on the retain split), holdout (never
# trained on: MIA non-members), options (TOFU real_authors / world_facts style utility splits).
ROLES = ("forget", "retain", "holdout", "options")


@dataclass
class SplitPlan:
    """What one rank evaluates on one split."""

    name: str
    role: str
    hash: str
    n_total: int  # rows of the split evaluated over all ranks
    records: list[dict[str, Any]]  # this rank's rows
    truth_ratio: bool  # score paraphrased / perturbed answers
    generate: bool  # greedy QA generation
    verbmem: bool  # VerbMem continuation of the forget text
    skipped: dict[str, str] = field(default_factory=dict)


def resolve_splits(
    dataset: Any, cfg: EvalConfig, purpose: str = "metrics"
) -> list[tuple[str, str]]:
    """(split, role) pairs to evaluate, from the config and the dataset's recorded pairs."""
    if purpose not in PURPOSES:
        raise ValueError(f"purpose {purpose!r} is not one of {PURPOSES}")
    if cfg.suite == "muse":
        from unlearn.eval.muse import muse_splits

        return muse_splits(dataset, purpose)
    have = set(dataset.splits)

    def need(name: str, key: str) -> str:
        if name not in have:
            raise DataError(
                f"{key}: dataset {dataset.path} has no split {name!r} (it has: {', '.join(sorted(have))})"
            )
        return name

    forget = need(cfg.forget_split, "forget_split")
    holdout = cfg.holdout_split or dataset.paired_split(forget, "holdout")
    out = [(forget, "forget")]
    if purpose == "metrics":
        if cfg.retain_split is not None:
            retain = need(cfg.retain_split, "retain_split")
        elif cfg.use_retain_perturbed and RETAIN_PERTURBED in have:
            retain = RETAIN_PERTURBED
        elif dataset.paired_split(forget, "retain"):
            retain = need(dataset.paired_split(forget, "retain"), "retain_split")
        else:
            raise DataError(
                f"dataset {dataset.path} records no retain split for {forget!r}; set retain_split"
            )
        out.append((retain, "retain"))
    if holdout is not None:
        out.append((need(holdout, "holdout_split"), "holdout"))
    if purpose == "metrics":
        if cfg.utility_splits is None:
            utility = [s for s in DEFAULT_UTILITY_SPLITS if s in have]
        else:
            utility = [need(s, "utility_splits") for s in cfg.utility_splits]
        taken = {name for name, _ in out}
        for s in utility:
            if s in taken:
                raise ConfigError(f"utility_splits: {s!r} is already evaluated as another role")
            out.append((s, "options"))
    return out


def retain_fallback(dataset: Any, cfg: EvalConfig, forget: str, retain: str | None) -> str | None:
    """The retain split a caller that trained on ``retain`` must name for evaluation: ``retain``
    when ``resolve_splits`` would find none of its own (no explicit ``retain_split``, no TOFU
    ``retain_perturbed``, no recorded pair), else None, so that training runs, the demo and
    ``unlearn eval`` all evaluate the same splits."""
    if cfg.retain_split is not None or retain is None:
        return None
    if cfg.use_retain_perturbed and RETAIN_PERTURBED in set(dataset.splits):
        return None
    return retain if dataset.paired_split(forget, "retain") is None else None


def subsample(rows: list[dict[str, Any]], limit: int | None) -> list[dict[str, Any]]:
    """At most ``limit`` rows, evenly spaced (deterministic)."""
    if limit is None or len(rows) <= limit:
        return rows
    return [rows[(i * len(rows)) // limit] for i in range(limit)]


def missing_perturbed(rows: list[dict[str, Any]], role: str) -> str | None:
    """Why the truth ratio cannot be computed on these rows, or None."""
    for r in rows:
        if not r.get("perturbed_answers"):
            return f"example {r['id']!r} has no perturbed answers (column 'perturbed_answers')"
        if role != "options" and not r.get("paraphrased_answer"):
            return f"example {r['id']!r} has no paraphrased answer (column 'paraphrased_answer')"
    return None


def make_plan(
    name: str,
    role: str,
    rows: list[dict[str, Any]],
    cfg: EvalConfig,
    *,
    split_hash: str = "",
    rank: int = 0,
    world_size: int = 1,
    purpose: str = "metrics",
) -> SplitPlan:
    """What rank ``rank`` of ``world_size`` evaluates on split ``name`` (rows rank, rank + W, ...)."""
    if role not in ROLES:
        raise ValueError(f"role {role!r} is not one of {ROLES}")
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} / world_size {world_size} is not a valid rank")
    gen = cfg.generation and purpose == "metrics"
    skipped: dict[str, str] = {}
    tr = role != "holdout"
    if tr:
        why = missing_perturbed(rows, role)
        if why is not None:
            if cfg.on_missing_perturbed == "error":
                raise DataError(
                    f"split {name!r}: {why}; the truth ratio needs paraphrased and perturbed "
                    "answers (set on_missing_perturbed: skip to skip the metric instead)"
                )
            tr = False
            skipped["truth_ratio"] = why
            if role == "options":
                skipped["probability"] = why
    return SplitPlan(
        name=name,
        role=role,
        hash=split_hash,
        n_total=len(rows),
        records=rows[rank::world_size],
        truth_ratio=tr,
        generate=gen and role != "holdout",
        verbmem=gen and cfg.verbmem and role == "forget",
        skipped=skipped,
    )


def plan_splits(
    dataset: Any, cfg: EvalConfig, rank: int = 0, world_size: int = 1, purpose: str = "metrics"
) -> list[SplitPlan]:
    """This rank's slice of every split to evaluate."""
    if cfg.suite == "muse":
        from unlearn.eval.muse import muse_plans

        return muse_plans(dataset, cfg, rank, world_size, purpose)
    return [
        make_plan(
            name,
            role,
            subsample(dataset.records(name), cfg.max_examples_per_split),
            cfg,
            split_hash=dataset.split_hash(name),
            rank=rank,
            world_size=world_size,
            purpose=purpose,
        )
        for name, role in resolve_splits(dataset, cfg, purpose)
    ]


def plan_work(plans: list[SplitPlan]) -> tuple[int, int]:
    """(teacher-forced items, generate prompts) a rank's plan holds."""
    items = prompts = 0
    for p in plans:
        for r in p.records:
            items += 1
            if p.truth_ratio:
                items += len(r["perturbed_answers"]) + (p.role != "options")
        prompts += len(p.records) * (int(p.generate) + int(p.verbmem))
    return items, prompts
