"""Evaluation: per-rank statistics (``evaluate_shard``), their merge into metrics (``merge_shards``)
and the retain-only model's cached reference (``retain_reference``).

The flow is the same in one process, across Ray tasks (``jobs/eval.py``) and across Ray Train
workers during training: every rank evaluates a strided slice of each split and returns plain
JSON (per-example statistics keyed by example id); one process merges the slices and computes
split metrics, MIA AUCs, forget quality, model utility, privleak and the checkpoint score. Because
metrics are computed only after the merge, any number of ranks gives the same numbers (up to float
noise from different batch compositions).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unlearn import storage
from unlearn.errors import ConfigError, DataError
from unlearn.eval import scoring
from unlearn.eval.config import DEFAULT_UTILITY_SPLITS, RETAIN_PERTURBED, EvalConfig
from unlearn.eval.metrics import (
    MIA_ATTACKS,
    SPLIT_METRICS,
    UTILITY_METRICS,
    forget_quality,
    harmonic_mean,
    mia_auc,
    privleak,
    rouge,
    selection_score,
    truth_ratio,
)
from unlearn.models.prompting import IGNORE_INDEX, encode_prompt, encode_qa

SHARD_FORMAT = 1
REFERENCE_FORMAT = 1
SCHEMA_VERSION = 1
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
    """(split, role) pairs to evaluate, from the config and dataset.json ``pairs``."""
    if purpose not in PURPOSES:
        raise ValueError(f"purpose {purpose!r} is not one of {PURPOSES}")
    have = set(dataset.splits)

    def need(name: str, key: str) -> str:
        if name not in have:
            raise DataError(
                f"{key}: dataset {dataset.path} has no split {name!r} (it has: {', '.join(sorted(have))})"
            )
        return name

    forget = need(cfg.forget_split, "forget_split")
    pair = dataset.info.pairs.get(forget) or {}
    holdout = cfg.holdout_split or pair.get("holdout")
    out = [(forget, "forget")]
    if purpose == "metrics":
        if cfg.retain_split is not None:
            retain = need(cfg.retain_split, "retain_split")
        elif cfg.use_retain_perturbed and RETAIN_PERTURBED in have:
            retain = RETAIN_PERTURBED
        elif pair.get("retain"):
            retain = need(pair["retain"], "retain_split")
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


def _subsample(rows: list[dict[str, Any]], limit: int | None) -> list[dict[str, Any]]:
    """At most ``limit`` rows, evenly spaced (deterministic)."""
    if limit is None or len(rows) <= limit:
        return rows
    return [rows[(i * len(rows)) // limit] for i in range(limit)]


def _missing_perturbed(rows: list[dict[str, Any]], role: str) -> str | None:
    """Why the truth ratio cannot be computed on these rows, or None."""
    for r in rows:
        if not r.get("perturbed_answers"):
            return f"example {r['id']!r} has no perturbed answers"
        if role != "options" and not r.get("paraphrased_answer"):
            return f"example {r['id']!r} has no paraphrased answer"
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
        why = _missing_perturbed(rows, role)
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
    return [
        make_plan(
            name,
            role,
            _subsample(dataset.records(name), cfg.max_examples_per_split),
            cfg,
            split_hash=dataset.split_hash(name),
            rank=rank,
            world_size=world_size,
            purpose=purpose,
        )
        for name, role in resolve_splits(dataset, cfg, purpose)
    ]


def _work(plans: list[SplitPlan]) -> tuple[int, int]:
    """(teacher-forced items, generate prompts) a rank's plan holds."""
    items = prompts = 0
    for p in plans:
        for r in p.records:
            items += 1
            if p.truth_ratio:
                items += len(r["perturbed_answers"]) + (p.role != "options")
        prompts += len(p.records) * (int(p.generate) + int(p.verbmem))
    return items, prompts


def _verbmem_prompt(
    tokenizer: Any, record: dict[str, Any], cfg: EvalConfig
) -> tuple[list[int], str]:
    """VerbMem prefix (prompt + the first part of the answer) and the true continuation's text."""
    enc = encode_qa(tokenizer, record["question"], record["answer"], cfg.max_length)
    start = sum(1 for y in enc["labels"] if y == IGNORE_INDEX)
    answer = enc["input_ids"][start:]
    if tokenizer.eos_token_id is not None and answer and answer[-1] == tokenizer.eos_token_id:
        answer = answer[:-1]
    m = int(len(answer) * cfg.verbmem_prefix_fraction)
    truth = tokenizer.decode(answer[m:], skip_special_tokens=True).strip()
    return enc["input_ids"][: start + m], truth


def evaluate_shard(
    model: Any,
    tokenizer: Any,
    dataset: Any,
    cfg: EvalConfig,
    rank: int = 0,
    world_size: int = 1,
    synced: bool = False,
    *,
    purpose: str = "metrics",
) -> dict[str, Any]:
    """Per-example statistics of this rank's slice of every split (JSON-serializable).

    ``synced=True`` makes every rank run the same number of forward passes and generate calls
    (dummy batches, results dropped) and passes ``synced_gpus=True`` to ``generate``: needed
    under DeepSpeed ZeRO-3. ``purpose="reference"`` computes only what the retain-model
    reference needs (forget truth ratios, forget / holdout MIA scores; no generation).
    """
    cfg.check()
    plans = plan_splits(dataset, cfg, rank, world_size, purpose)
    pad: dict[str, Any] = {}
    if synced:
        work = [_work(plan_splits(dataset, cfg, r, world_size, purpose)) for r in range(world_size)]
        first = plan_splits(dataset, cfg, 0, 1, purpose)[0].records[0]
        pad = {
            "score_batches": max(scoring.n_batches(w[0], cfg.batch_size) for w in work),
            "gen_batches": max(scoring.n_batches(w[1], cfg.batch_size) for w in work),
            "dummy_item": scoring.ScoreItem(first["question"], first["answer"]),
            "dummy_prompt": encode_prompt(tokenizer, first["question"]),
        }
    return {
        "format": SHARD_FORMAT,
        "purpose": purpose,
        "rank": rank,
        "world_size": world_size,
        "dataset_hash": dataset.hash,
        "splits": run_plans(model, tokenizer, plans, cfg, synced=synced, **pad),
    }


def evaluate_records(
    model: Any,
    tokenizer: Any,
    split: str,
    role: str,
    records: list[dict[str, Any]],
    cfg: EvalConfig,
) -> dict[str, Any]:
    """Per-example statistics of ``records`` evaluated as one split in ``role`` (one process).

    The building block of ``evaluate_shard``; aggregate with ``split_metrics``.
    """
    cfg.check()
    plan = make_plan(split, role, records, cfg)
    return run_plans(model, tokenizer, [plan], cfg)[split]


def run_plans(
    model: Any,
    tokenizer: Any,
    plans: list[SplitPlan],
    cfg: EvalConfig,
    *,
    synced: bool = False,
    score_batches: int | None = None,
    gen_batches: int | None = None,
    dummy_item: scoring.ScoreItem | None = None,
    dummy_prompt: list[int] | None = None,
) -> dict[str, Any]:
    """Score and generate everything ``plans`` ask for, batched across splits; {split: part}."""
    attacks = {
        n: MIA_ATTACKS[n].attack for n in dict.fromkeys([*cfg.mia_attacks, cfg.privleak_attack])
    }
    items: list[scoring.ScoreItem] = []
    item_keys: list[tuple[str, str, str]] = []  # (split, id, answer | paraphrased | perturbed)
    prompts: list[list[int]] = []
    prompt_keys: list[tuple[str, str, str, str]] = []  # (split, id, kind, reference text)
    for p in plans:
        for r in p.records:
            full = p.role in ("forget", "retain", "holdout")
            items.append(scoring.ScoreItem(r["question"], r["answer"], full))
            item_keys.append((p.name, r["id"], "answer"))
            if p.truth_ratio:
                if p.role != "options":
                    items.append(scoring.ScoreItem(r["question"], r["paraphrased_answer"]))
                    item_keys.append((p.name, r["id"], "paraphrased"))
                for alt in r["perturbed_answers"]:
                    items.append(scoring.ScoreItem(r["question"], alt))
                    item_keys.append((p.name, r["id"], "perturbed"))
            if p.generate:
                prompts.append(encode_prompt(tokenizer, r["question"]))
                prompt_keys.append((p.name, r["id"], "generation", r["answer"]))
            if p.verbmem:
                prefix, truth = _verbmem_prompt(tokenizer, r, cfg)
                prompts.append(prefix)
                prompt_keys.append((p.name, r["id"], "verbmem", truth))

    encoded = scoring.encode_items(tokenizer, items, cfg.max_length)
    scoring.check_vocabulary(model, tokenizer, [e["input_ids"] for e in encoded] + prompts)

    was_training = model.training
    model.eval()
    try:
        stats = scoring.score(
            model,
            tokenizer,
            items,
            batch_size=cfg.batch_size,
            max_length=cfg.max_length,
            attacks=attacks,
            min_k=cfg.min_k,
            n_batches=score_batches,
            dummy=dummy_item,
            encoded=encoded,
        )
        texts: list[str] = []
        if prompts or gen_batches:
            texts = scoring.generate(
                model,
                tokenizer,
                prompts,
                batch_size=cfg.batch_size,
                max_new_tokens=cfg.max_new_tokens,
                synced=synced,
                n_batches=gen_batches,
                dummy=dummy_prompt,
            )
    finally:
        model.train(was_training)

    splits: dict[str, Any] = {}
    roles = {p.name: p.role for p in plans}
    for p in plans:
        examples: dict[str, Any] = {}
        for r in p.records:
            ex: dict[str, Any] = {}
            if p.generate:
                ex["question"], ex["answer_text"] = r["question"], r["answer"]
            if p.truth_ratio:
                ex["perturbed"] = []
            examples[r["id"]] = ex
        splits[p.name] = {
            "role": p.role,
            "hash": p.hash,
            "n_total": p.n_total,
            "skipped": p.skipped,
            "examples": examples,
        }
    for (split, id_, kind), st in zip(item_keys, stats):
        ex = splits[split]["examples"][id_]
        if kind == "answer":
            if roles[split] not in ("forget", "holdout"):
                st = {k: v for k, v in st.items() if k != "mia"}
            ex["answer"] = st
        elif kind == "paraphrased":
            ex["paraphrased"] = st["avg_nll"]
        else:
            ex["perturbed"].append(st["avg_nll"])
    for (split, id_, kind, truth), text in zip(prompt_keys, texts):
        splits[split]["examples"][id_][kind] = {"text": text, **rouge(text, truth)}
    return splits


def split_metrics(part: dict[str, Any]) -> tuple[dict[str, float], dict[str, str]]:
    """({metric: value}, {metric: why skipped}) of one merged split part, from the registry."""
    role, values, skipped = part["role"], {}, {}
    for mname, metric in SPLIT_METRICS.items():
        if role not in metric.roles:
            continue
        if mname in part["skipped"]:
            skipped[mname] = part["skipped"][mname]
            continue
        per = [metric.per_example(ex, role) for ex in part["examples"].values()]
        if all(v is None for v in per):
            continue  # not computed (generation or verbmem off)
        if any(v is None for v in per):
            raise ValueError(f"{mname}: some examples lack the statistics it needs")
        agg = metric.aggregate or (lambda xs, _role: float(sum(xs) / len(xs)))
        values[mname] = agg(per, role)  # type: ignore[arg-type]
    return values, skipped


def _union(shards: Sequence[dict[str, Any]], purpose: str) -> dict[str, dict[str, Any]]:
    """Merge the shards' splits; check they agree and together cover every example once."""
    if not shards:
        raise ValueError("no shards to merge")
    merged: dict[str, dict[str, Any]] = {}
    for sh in shards:
        if sh.get("format") != SHARD_FORMAT:
            raise ValueError(f"shard format {sh.get('format')!r} is not {SHARD_FORMAT}")
        if sh.get("purpose") != purpose:
            raise ValueError(f"a shard computed for {sh.get('purpose')!r} cannot make {purpose!r}")
        if sh["dataset_hash"] != shards[0]["dataset_hash"]:
            raise DataError("shards were computed on different datasets (dataset hashes differ)")
        for name, part in sh["splits"].items():
            into = merged.setdefault(name, {**part, "examples": {}})
            if (into["role"], into["hash"], into["n_total"]) != (
                part["role"],
                part["hash"],
                part["n_total"],
            ):
                raise DataError(f"shards disagree on split {name!r} (role, content or size)")
            overlap = into["examples"].keys() & part["examples"].keys()
            if overlap:
                raise DataError(f"example {sorted(overlap)[0]!r} of {name!r} is in two shards")
            into["examples"].update(part["examples"])
    for name, part in merged.items():
        if len(part["examples"]) != part["n_total"]:
            raise DataError(
                f"the shards hold {len(part['examples'])} of the {part['n_total']} examples of "
                f"split {name!r}: a rank's shard is missing"
            )
        part["examples"] = dict(sorted(part["examples"].items()))
    return merged


def _by_role(merged: dict[str, dict[str, Any]], role: str) -> str | None:
    names = [n for n, p in merged.items() if p["role"] == role]
    return names[0] if names else None


def _forget_truth_ratios(part: dict[str, Any]) -> dict[str, float] | None:
    if "truth_ratio" in part["skipped"]:
        return None
    return {
        i: truth_ratio(ex["paraphrased"], ex["perturbed"]) for i, ex in part["examples"].items()
    }


def _aucs(merged: dict[str, Any], forget: str, holdout: str | None, attacks: list[str]) -> dict:
    if holdout is None:
        return {}
    out = {}
    for a in attacks:
        f = [ex["answer"]["mia"][a] for ex in merged[forget]["examples"].values()]
        h = [ex["answer"]["mia"][a] for ex in merged[holdout]["examples"].values()]
        out[a] = mia_auc(f, h)
    return out


def merge_shards(
    shards: Sequence[dict[str, Any]],
    cfg: EvalConfig,
    retain_reference: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The metrics (metrics.json without provenance) from every rank's ``evaluate_shard`` output."""
    cfg.check()
    merged = _union(shards, "metrics")
    forget = _by_role(merged, "forget")
    retain = _by_role(merged, "retain")
    holdout = _by_role(merged, "holdout")
    if forget is None or retain is None:
        raise DataError("the shards hold no forget or no retain split")

    splits: dict[str, dict[str, float]] = {}
    skipped: dict[str, str] = {}
    for name, part in merged.items():
        splits[name], why = split_metrics(part)
        skipped.update({f"{name}.{m}": w for m, w in why.items()})

    mia = {a: {"auc": v} for a, v in _aucs(merged, forget, holdout, cfg.mia_attacks).items()}
    forget_trs = _forget_truth_ratios(merged[forget])

    fq, fq_reason = None, None
    if retain_reference is None:
        fq_reason = (
            "no retain model: forget quality compares the forget truth ratios with those of a "
            "model trained without the forget set (pass --retain-model / retain_reference)"
        )
    elif forget_trs is None:
        fq_reason = (
            f"the truth ratio of {forget!r} was skipped: {merged[forget]['skipped']['truth_ratio']}"
        )
    else:
        _check_reference(retain_reference, forget, merged[forget])
        ref_trs = retain_reference["forget_truth_ratios"]
        fq = forget_quality(list(forget_trs.values()), [ref_trs[i] for i in forget_trs])

    pl, pl_reason = None, None
    if holdout is None:
        pl_reason = f"no holdout split for {forget!r}: membership inference needs one"
    elif retain_reference is None:
        pl_reason = "no retain model: privleak compares the MIA AUC with the retain model's"
    else:
        ref_auc = (retain_reference.get("mia_auc") or {}).get(cfg.privleak_attack)
        if ref_auc is None:
            pl_reason = f"the retain reference has no {cfg.privleak_attack} AUC"
        else:
            auc = _aucs(merged, forget, holdout, [cfg.privleak_attack])[cfg.privleak_attack]
            pl = privleak(auc, ref_auc)

    components: dict[str, float] = {}
    missing = []
    for name, part in merged.items():
        if part["role"] not in ("retain", "options"):
            continue
        for m in UTILITY_METRICS:
            if m in splits[name]:
                components[f"{name}.{m}"] = splits[name][m]
            else:
                missing.append(f"{name}.{m}")
    mu, mu_reason = None, None
    if missing:
        why = "generation is off" if not cfg.generation else "skipped or not computed"
        mu_reason = f"missing {', '.join(missing)} ({why})"
    else:
        mu = harmonic_mean(list(components.values()))

    score, formula = selection_score(cfg.score, fq, mu, splits[forget].get("truth_ratio"))
    examples = []
    for name in (forget, retain):
        part = merged[name]
        for id_, ex in list(part["examples"].items())[: cfg.report_examples]:
            if "generation" in ex:
                examples.append(
                    {
                        "split": name,
                        "role": part["role"],
                        "id": id_,
                        "question": ex["question"],
                        "answer": ex["answer_text"],
                        "generation": ex["generation"]["text"],
                    }
                )
    reference_info = None
    if retain_reference is not None:
        reference_info = {
            "model_hash": retain_reference.get("model_hash"),
            "mia_auc": retain_reference.get("mia_auc"),
        }
    return {
        "forget_quality": fq,
        "forget_quality_reason": fq_reason,
        "model_utility": mu,
        "model_utility_reason": mu_reason,
        "privleak": pl,
        "privleak_reason": pl_reason,
        "score": score,
        "score_formula": formula,
        "splits": splits,
        "mia": mia,
        "model_utility_components": components,
        "roles": {n: p["role"] for n, p in merged.items()},
        "rows": {n: p["n_total"] for n, p in merged.items()},
        "skipped": skipped,
        "retain_reference": reference_info,
        "examples": examples,
    }


def _check_reference(ref: dict[str, Any], forget: str, part: dict[str, Any]) -> None:
    if ref.get("format") != REFERENCE_FORMAT:
        raise ValueError(f"retain reference format {ref.get('format')!r} is not {REFERENCE_FORMAT}")
    if ref["forget_split_hash"] != part["hash"]:
        raise DataError(
            f"the retain reference was computed on forget split {ref['forget_split']!r} with "
            f"content {ref['forget_split_hash'][:12]}, not on {forget!r} ({part['hash'][:12]})"
        )
    if set(ref["forget_truth_ratios"]) != set(part["examples"]):
        raise DataError(
            "the retain reference covers other forget examples than this evaluation "
            "(max_examples_per_split differs?)"
        )


def reference_from_shards(
    shards: Sequence[dict[str, Any]], cfg: EvalConfig, model_hash: str | None = None
) -> dict[str, Any]:
    """The retain-only model's reference from its ``evaluate_shard(purpose="reference")`` shards."""
    merged = _union(shards, "reference")
    forget = _by_role(merged, "forget")
    holdout = _by_role(merged, "holdout")
    if forget is None:
        raise DataError("the reference shards hold no forget split")
    trs = _forget_truth_ratios(merged[forget])
    attacks = list(dict.fromkeys([*cfg.mia_attacks, cfg.privleak_attack]))
    return {
        "format": REFERENCE_FORMAT,
        "model_hash": model_hash,
        "dataset_hash": shards[0]["dataset_hash"],
        "forget_split": forget,
        "forget_split_hash": merged[forget]["hash"],
        "holdout_split": holdout,
        "holdout_split_hash": merged[holdout]["hash"] if holdout else None,
        "forget_truth_ratios": trs or {},
        "mia_auc": _aucs(merged, forget, holdout, attacks),
    }


def default_cache_dir() -> str:
    """Where retain references are cached: $UNLEARN_CACHE_DIR/retain_reference (~/.cache/unlearn)."""
    base = os.environ.get("UNLEARN_CACHE_DIR") or str(Path.home() / ".cache" / "unlearn")
    return storage.join(base, "retain_reference")


def reference_key(dataset: Any, cfg: EvalConfig, weights_hash: str) -> str:
    """Cache key of a retain reference: dataset, forget / holdout split content, model weights and
    the settings that change the numbers."""
    splits = resolve_splits(dataset, cfg, "reference")
    material = {
        "format": REFERENCE_FORMAT,
        "dataset": dataset.hash,
        "splits": [(n, r, dataset.split_hash(n)) for n, r in splits],
        "weights": weights_hash,
        "max_length": cfg.max_length,
        "min_k": cfg.min_k,
        "attacks": sorted(set([*cfg.mia_attacks, cfg.privleak_attack])),
        "max_examples_per_split": cfg.max_examples_per_split,
        "on_missing_perturbed": cfg.on_missing_perturbed,
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def load_cached_reference(
    key: str, cache_dir: str | None = None, storage_options: dict[str, Any] | None = None
) -> dict[str, Any] | None:
    """A cached reference, or None."""
    path = storage.join(cache_dir or default_cache_dir(), f"{key}.json")
    if not storage.exists(path, storage_options):
        return None
    return json.loads(storage.read_bytes(path, storage_options))


def save_reference(
    ref: dict[str, Any],
    key: str,
    cache_dir: str | None = None,
    storage_options: dict[str, Any] | None = None,
) -> str:
    """Write a reference into the cache (atomically); returns its path."""
    path = storage.join(cache_dir or default_cache_dir(), f"{key}.json")
    storage.write_bytes(path, json.dumps(ref, indent=1, allow_nan=False).encode(), storage_options)
    return path


def state_dict_hash(model: Any) -> str:
    """SHA-256 over a model's parameters and buffers (names, dtypes, shapes, bytes)."""
    import torch

    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def retain_reference(
    model: Any,
    tokenizer: Any,
    dataset: Any,
    cfg: EvalConfig,
    *,
    weights_hash: str | None = None,
    cache_dir: str | None = None,
    use_cache: bool = True,
) -> dict[str, Any]:
    """The retain-only model's per-example forget truth ratios and MIA AUCs, cached on disk.

    Keyed by ``reference_key`` (dataset hash, split hashes, ``weights_hash`` — computed from the
    model's state dict when not given — and settings); stored under ``cache_dir`` (default
    ``default_cache_dir()``).
    """
    wh = weights_hash or state_dict_hash(model)
    key = reference_key(dataset, cfg, wh)
    if use_cache:
        cached = load_cached_reference(key, cache_dir)
        if cached is not None:
            return cached
    shard = evaluate_shard(model, tokenizer, dataset, cfg, purpose="reference")
    ref = reference_from_shards([shard], cfg, model_hash=wh)
    if use_cache:
        save_reference(ref, key, cache_dir)
    return ref


def evaluate(
    model: Any,
    tokenizer: Any,
    dataset: Any,
    cfg: EvalConfig,
    retain_reference: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Single-process evaluation: ``merge_shards([evaluate_shard(...)])``."""
    shard = evaluate_shard(model, tokenizer, dataset, cfg)
    return merge_shards([shard], cfg, retain_reference)


def model_hash(path: str, storage_options: dict[str, Any] | None = None) -> str | None:
    """A model's identity: the manifest's weights hash, else the local safetensors' hash."""
    from unlearn.models import model_identity, weights_hash

    found = model_identity(path, storage_options)
    if found is None and not storage.is_remote(path) and Path(path).is_dir():
        found = weights_hash(path)
    return found


def metrics_document(
    metrics: dict[str, Any],
    *,
    model_path: str | None,
    model_hash: str | None,
    dataset: Any,
    cfg: EvalConfig,
    retain_model_path: str | None = None,
) -> dict[str, Any]:
    """metrics.json: the merged metrics plus provenance (model, dataset, eval config)."""
    from unlearn.config import to_dict

    doc = {"schema_version": SCHEMA_VERSION, **metrics}
    doc["model"] = {"path": model_path, "hash": model_hash}
    doc["dataset"] = {"path": dataset.path, "hash": dataset.hash}
    if retain_model_path is not None and doc.get("retain_reference") is not None:
        doc["retain_reference"] = {**doc["retain_reference"], "model_path": retain_model_path}
    doc["eval_config"] = to_dict(cfg)
    return doc


def dumps(document: dict[str, Any]) -> str:
    """Serialize a metrics document (no NaN / infinity: they are not JSON)."""
    return json.dumps(_finite(document), indent=2, allow_nan=False)


def _finite(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        raise ValueError(f"metric value {obj} is not finite")
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def write_metrics(
    path: str, document: dict[str, Any], storage_options: dict[str, Any] | None = None
) -> None:
    """Write metrics.json (local or S3, atomically)."""
    storage.write_bytes(path, dumps(document).encode(), storage_options)


def replace(cfg: EvalConfig, **changes: Any) -> EvalConfig:
    """A checked copy of ``cfg`` with ``changes``."""
    new = dataclasses.replace(cfg, **changes)
    new.check()
    return new
