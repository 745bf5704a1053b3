"""Merging shards into metrics: split metrics, MIA AUCs, forget quality, utility, privleak, score.

Metrics are computed only after every rank's shard is merged (and checked to cover every example
exactly once), so any number of ranks gives the same numbers, up to float noise from different
batch compositions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from unlearn.errors import DataError
from unlearn.eval.config import EvalConfig
from unlearn.eval.fluency import malformed_kind
from unlearn.eval.metrics import (
    MIA_ATTACKS,
    SPLIT_METRICS,
    UTILITY_METRICS,
    forget_quality,
    harmonic_mean,
    mia_auc,
    mia_reference,
    privleak,
    rel_diff,
    selection_score,
    truth_ratio,
    unlearning_verdict,
)
from unlearn.eval.shard import SHARD_FORMAT, evaluate_shard

# 2: the reference also holds the retain model's per-example answer NLL on forget and holdout
# (``avg_nll``, for the reference-model attack).
REFERENCE_FORMAT = 2


def split_metrics(part: dict[str, Any]) -> tuple[dict[str, float], dict[str, str]]:
    """({metric: value}, {metric: why skipped}) of one merged split part, from the registry."""
    role, values, skipped = part["role"], {}, {}
    for mname, metric in SPLIT_METRICS.items():
        if role not in metric.roles:
            continue
        if mname in part["skipped"]:
            skipped[mname] = part["skipped"][mname]
            continue
        if metric.per_split is not None:
            value = metric.per_split(part)
            if value is not None:
                values[mname] = value
            continue
        per = [metric.per_example(ex, role) for ex in part["examples"].values()]
        if all(v is None for v in per):
            continue  # not computed (generation or verbmem off)
        if any(v is None for v in per):
            raise ValueError(f"{mname}: some examples lack the statistics it needs")
        agg = metric.aggregate or (lambda xs, _role: float(sum(xs) / len(xs)))
        values[mname] = agg(per, role)  # type: ignore[arg-type]
    return values, skipped


def union_shards(shards: Sequence[dict[str, Any]], purpose: str) -> dict[str, dict[str, Any]]:
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


def by_role(merged: dict[str, dict[str, Any]], role: str) -> str | None:
    names = [n for n, p in merged.items() if p["role"] == role]
    return names[0] if names else None


def forget_truth_ratios(part: dict[str, Any]) -> dict[str, float] | None:
    if "truth_ratio" in part["skipped"]:
        return None
    return {
        i: truth_ratio(ex["paraphrased"], ex["perturbed"]) for i, ex in part["examples"].items()
    }


def mia_aucs(
    merged: dict[str, Any],
    forget: str,
    holdout: str | None,
    attacks: list[str],
    reference: dict[str, Any] | None = None,
) -> dict:
    """ROC AUC of each attack, forget vs holdout. Reference-model attacks need ``reference``
    (the retain model's per-example NLL) and are left out without it."""
    if holdout is None:
        return {}
    out = {}
    for a in attacks:
        if MIA_ATTACKS[a].computed == "reference":
            nll = (reference or {}).get("avg_nll")
            if not nll:
                continue

            def scores(split: str, role: str, nll: dict = nll) -> list[float]:
                missing = merged[split]["examples"].keys() - nll[role].keys()
                if missing:
                    raise DataError(
                        f"the retain reference has no NLL for {role} example "
                        f"{sorted(missing)[0]!r} of {split!r}: it was computed on other rows"
                    )
                return [
                    mia_reference(ex["answer"]["avg_nll"], nll[role][i])
                    for i, ex in merged[split]["examples"].items()
                ]

            out[a] = mia_auc(scores(forget, "forget"), scores(holdout, "holdout"))
            continue
        f = [ex["answer"]["mia"][a] for ex in merged[forget]["examples"].values()]
        h = [ex["answer"]["mia"][a] for ex in merged[holdout]["examples"].values()]
        out[a] = mia_auc(f, h)
    return out


def answer_nlls(part: dict[str, Any]) -> dict[str, float]:
    """Each example's mean answer-token NLL (what the reference-model attack calibrates by)."""
    return {i: ex["answer"]["avg_nll"] for i, ex in part["examples"].items()}


def merge_shards(
    shards: Sequence[dict[str, Any]],
    cfg: EvalConfig,
    retain_reference: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The metrics (metrics.json without provenance) from every rank's ``evaluate_shard`` output."""
    merged = union_shards(shards, "metrics")
    if cfg.suite == "muse":
        from unlearn.eval.muse import merge_muse

        return merge_muse(merged, cfg, retain_reference)
    forget = by_role(merged, "forget")
    retain = by_role(merged, "retain")
    holdout = by_role(merged, "holdout")
    if forget is None or retain is None:
        raise DataError("the shards hold no forget or no retain split")

    splits: dict[str, dict[str, float]] = {}
    skipped: dict[str, str] = {}
    for name, part in merged.items():
        splits[name], why = split_metrics(part)
        skipped.update({f"{name}.{m}": w for m, w in why.items()})

    aucs = mia_aucs(merged, forget, holdout, cfg.mia_attacks, retain_reference)
    mia = {a: {"auc": v} for a, v in aucs.items()}
    if holdout is not None:
        for a in cfg.mia_attacks:
            if a not in aucs:
                skipped[f"mia.{a}"] = (
                    "no retain model: the reference attack calibrates each loss by the retain "
                    "model's (pass --retain-model)"
                )
    forget_trs = forget_truth_ratios(merged[forget])

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
        check_reference(retain_reference, forget, merged[forget])
        ref_trs = retain_reference["forget_truth_ratios"]
        fq = forget_quality(list(forget_trs.values()), [ref_trs[i] for i in forget_trs])

    pl, pl_reason, pl_ref, rd = None, None, None, None
    if holdout is None:
        pl_reason = f"no holdout split for {forget!r}: membership inference needs one"
    elif retain_reference is None and cfg.privleak_reference_auc is None:
        pl_reason = (
            "no retain model: privleak compares the MIA AUC with the retain model's (or set "
            "privleak_reference_auc: 0.5, open-unlearning's fallback)"
        )
    else:
        if retain_reference is not None:
            ref_auc = (retain_reference.get("mia_auc") or {}).get(cfg.privleak_attack)
            pl_ref = "retain model"
        else:
            ref_auc = cfg.privleak_reference_auc
            pl_ref = f"fixed AUC {ref_auc:g} (no retain model; open-unlearning's fallback)"
        if ref_auc is None:
            pl_reason = f"the retain reference has no {cfg.privleak_attack} AUC"
            pl_ref = None
        else:
            auc = mia_aucs(merged, forget, holdout, [cfg.privleak_attack])[cfg.privleak_attack]
            pl = privleak(auc, ref_auc)
            rd = rel_diff(auc, ref_auc)

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

    malformed = splits[forget].get("malformed_rate")
    score, formula = selection_score(
        cfg.score, fq, mu, splits[forget].get("truth_ratio"), pl, malformed
    )
    if cfg.generation and cfg.fluency_path is None:
        for name, part in merged.items():
            if part["role"] in ("forget", "retain", "options") and "rouge_l_recall" in splits[name]:
                skipped[f"{name}.answer_perplexity"] = (
                    "no reference model to read the answers (eval.fluency_model: the retain "
                    "model, when given, or a model path)"
                )
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
                        "malformed": malformed_kind(ex["generation"]["text"]),
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
        # what privleak and rel_diff compare with: "retain model", a fixed AUC, or null
        "privleak_reference": pl_ref,
        "rel_diff": rd,
        "rel_diff_reason": pl_reason,
        "score": score,
        "score_formula": formula,
        # under-unlearned / retain-like / over-unlearned / collapsed (metrics.unlearning_verdict)
        "verdict": unlearning_verdict(pl, malformed),
        "splits": splits,
        "mia": mia,
        "model_utility_components": components,
        "roles": {n: p["role"] for n, p in merged.items()},
        "rows": {n: p["n_total"] for n, p in merged.items()},
        "skipped": skipped,
        "retain_reference": reference_info,
        "examples": examples,
    }


def check_reference(ref: dict[str, Any], forget: str, part: dict[str, Any]) -> None:
    """Refuse a retain reference computed on another forget split or other examples."""
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
