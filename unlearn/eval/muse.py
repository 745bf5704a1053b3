"""MUSE's metrics as MUSE defines them (Shi et al. 2024, https://arxiv.org/abs/2407.06460; as
open-unlearning runs them), on the splits ``unlearn data import --format muse`` writes.

    KnowMem (C2 on forget_qa, utility C4 on retain_qa): greedy answer (``knowmem_max_new_tokens``,
        32) to the question after the split's in-context examples (``*_qa_icl``, as earlier
        turns of the model's prompt format), cut at the first stop string, ROUGE-L F1 against
        the answer; mean over questions.
    VerbMem (C1): greedy continuation (``verbmem_max_new_tokens``, 128) of each raw prompt (no
        template), ROUGE-L F1 against the true continuation ``gt``; mean.
    PrivLeak (C3): the ``privleak_attack`` (Min-K%++ in the preset) AUC on the forget passages
        (members) vs the holdout passages, relative to the retain model's AUC (or a fixed one).

The passages are also scored teacher-forced for extraction strength, exact memorization and the
other MIA attacks. ``evaluate_muse_shard`` and ``merge_muse`` produce the same shard and
metrics.json layout as the QA suite (``shard.evaluate_shard`` / ``merge.merge_shards`` hand over
to them when ``suite`` is "muse"). ``model_utility`` is KnowMem on retain (MUSE's utility), and
there is no forget quality (TOFU's; MUSE defines none).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from unlearn.errors import DataError
from unlearn.eval import scoring
from unlearn.eval.config import EvalConfig
from unlearn.eval.metrics import FORWARD_ATTACKS, MIA_ATTACKS, rouge
from unlearn.eval.plan import SplitPlan, subsample
from unlearn.models.prompting import encode_completion, format_fewshot_prompt, prompt_ids

# role -> the split (written by unlearn.data.muse)
ROLE_SPLITS = {
    "forget": "privleak_forget",
    "retain": "privleak_retain",
    "holdout": "privleak_holdout",
    "knowmem_forget": "knowmem_forget_qa",
    "knowmem_retain": "knowmem_retain_qa",
    "verbmem": "verbmem_forget",
}
ICL_SPLITS = {"knowmem_forget": "knowmem_forget_qa_icl", "knowmem_retain": "knowmem_retain_qa_icl"}
TEXT_ROLES = ("forget", "retain", "holdout")
NO_TRUTH_RATIO = "MUSE passages have no paraphrased or perturbed answers"


def muse_splits(dataset: Any, purpose: str = "metrics") -> list[tuple[str, str]]:
    """(split, role) pairs of the MUSE suite; a missing split is named with how to make it."""
    roles = ("forget", "holdout") if purpose == "reference" else tuple(ROLE_SPLITS)
    have = set(dataset.splits)
    needed = [ROLE_SPLITS[r] for r in roles] + [ICL_SPLITS[r] for r in roles if r in ICL_SPLITS]
    missing = [s for s in needed if s not in have]
    if missing:
        raise DataError(
            f"suite muse: dataset {dataset.path} has no split {missing[0]!r} (it has: "
            f"{', '.join(sorted(have))}); import MUSE with `unlearn data import --format muse`"
        )
    return [(ROLE_SPLITS[r], r) for r in roles]


def muse_plans(
    dataset: Any, cfg: EvalConfig, rank: int = 0, world_size: int = 1, purpose: str = "metrics"
) -> list[SplitPlan]:
    """This rank's rows (``rank, rank + W, ...``) of every MUSE split."""
    plans = []
    for name, role in muse_splits(dataset, purpose):
        rows = subsample(dataset.records(name), cfg.max_examples_per_split)
        text = role in TEXT_ROLES
        plans.append(
            SplitPlan(
                name=name,
                role=role,
                hash=dataset.split_hash(name),
                n_total=len(rows),
                records=rows[rank::world_size],
                truth_ratio=False,
                generate=not text and cfg.generation and purpose == "metrics",
                verbmem=False,
                skipped={"truth_ratio": NO_TRUTH_RATIO} if text else {},
            )
        )
    return plans


def _prompt(tokenizer: Any, plan: SplitPlan, record: dict[str, Any], shots: list) -> list[int]:
    if plan.role == "verbmem":
        return encode_completion(tokenizer, record["question"])
    return prompt_ids(tokenizer, format_fewshot_prompt(record["question"], shots, tokenizer))


def _work(plans: list[SplitPlan], cfg: EvalConfig) -> tuple[int, dict[int, int]]:
    items = sum(len(p.records) for p in plans if p.role in TEXT_ROLES)
    prompts: dict[int, int] = {}
    for p in plans:
        if p.generate:
            n = _max_new(p, cfg)
            prompts[n] = prompts.get(n, 0) + len(p.records)
    return items, prompts


def _max_new(plan: SplitPlan, cfg: EvalConfig) -> int:
    return cfg.verbmem_max_new_tokens if plan.role == "verbmem" else cfg.knowmem_max_new_tokens


def cut_at_stop(text: str, stops: Sequence[str]) -> str:
    """The text up to the first of ``stops`` (MUSE cuts KnowMem answers there), stripped."""
    for stop in stops:
        if stop in text:
            text = text.split(stop)[0]
    return text.strip()


def evaluate_muse_shard(
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
    """Per-example statistics of this rank's MUSE rows (the shard format of ``evaluate_shard``)."""
    from unlearn.eval.shard import SHARD_FORMAT

    plans = muse_plans(dataset, cfg, rank, world_size, purpose)
    pad_items: int | None = None
    pad_prompts: dict[int, int] = {}
    if synced:  # every rank runs as many forward passes and generate calls as the busiest
        work = [
            _work(muse_plans(dataset, cfg, r, world_size, purpose), cfg) for r in range(world_size)
        ]
        pad_items = max(scoring.n_batches(w[0], cfg.batch_size) for w in work)
        for n in {k for w in work for k in w[1]}:
            pad_prompts[n] = max(scoring.n_batches(w[1].get(n, 0), cfg.batch_size) for w in work)
    attacks = {
        n: MIA_ATTACKS[n].attack
        for n in dict.fromkeys([*cfg.mia_attacks, cfg.privleak_attack])
        if n in FORWARD_ATTACKS
    }
    gradient = [
        n
        for n in dict.fromkeys([*cfg.mia_attacks, cfg.privleak_attack])
        if MIA_ATTACKS[n].computed == "gradient"
    ]
    items, keys = [], []
    for p in plans:
        if p.role in TEXT_ROLES:
            for r in p.records:
                items.append(scoring.ScoreItem("", r["answer"], full=True))
                keys.append((p.name, r["id"]))
    groups: dict[int, list[tuple[str, str, str, list[int]]]] = {}
    for p in plans:
        if not p.generate:
            continue
        shots = []
        if p.role in ICL_SPLITS:
            shots = [(r["question"], r["answer"]) for r in dataset.records(ICL_SPLITS[p.role])]
        for r in p.records:
            groups.setdefault(_max_new(p, cfg), []).append(
                (p.name, r["id"], r["answer"], _prompt(tokenizer, p, r, shots))
            )
    encoded = scoring.encode_items(tokenizer, items, cfg.max_length)
    all_prompts = [g[3] for group in groups.values() for g in group]
    scoring.check_vocabulary(model, tokenizer, [e["input_ids"] for e in encoded] + all_prompts)
    first = dataset.records(plans[0].name)[0]  # the same padding row on every rank
    dummy_item = scoring.ScoreItem("", first["answer"], full=True)
    was_training = model.training
    model.eval()
    try:
        stats = scoring.score(
            model, tokenizer, items, batch_size=cfg.batch_size, max_length=cfg.max_length,
            attacks=attacks, min_k=cfg.min_k, n_batches=pad_items, dummy=dummy_item,
            encoded=encoded,
        )  # fmt: skip
        if gradient:
            roles = {p.name: p.role for p in plans}
            rows = [i for i, (split, _) in enumerate(keys) if roles[split] != "retain"]
            norms = scoring.gradient_norms(
                model, [encoded[i] for i in rows], cfg.gradnorm_p, tokenizer.eos_token_id
            )
            for i, per_param in zip(rows, norms):
                for name in gradient:
                    stats[i]["mia"][name] = MIA_ATTACKS[name].attack(param_grad_norms=per_param)
        texts: dict[tuple[str, str], tuple[str, str]] = {}
        for n in sorted(set(groups) | set(pad_prompts)):
            group = groups.get(n, [])
            dummy = group[0][3] if group else (all_prompts[0] if all_prompts else [0])
            out = scoring.generate(
                model, tokenizer, [g[3] for g in group], batch_size=cfg.batch_size,
                max_new_tokens=n, synced=synced, n_batches=pad_prompts.get(n), dummy=dummy,
            )  # fmt: skip
            for (split, id_, truth, _), text in zip(group, out):
                texts[(split, id_)] = (text, truth)
    finally:
        model.train(was_training)

    splits: dict[str, Any] = {}
    for p in plans:
        examples: dict[str, Any] = {}
        for r in p.records:
            ex: dict[str, Any] = {}
            if (p.name, r["id"]) in texts:
                text, truth = texts[(p.name, r["id"])]
                if p.role != "verbmem":
                    text = cut_at_stop(text, cfg.knowmem_stop)
                ex = {
                    "question": r["question"],
                    "answer_text": truth,
                    "generation": {"text": text, **rouge(text, truth)},
                }
            examples[r["id"]] = ex
        splits[p.name] = {
            "role": p.role,
            "hash": p.hash,
            "n_total": p.n_total,
            "skipped": p.skipped,
            "examples": examples,
        }
    for (split, id_), st in zip(keys, stats):
        if splits[split]["role"] == "retain":
            st = {k: v for k, v in st.items() if k != "mia"}
        splits[split]["examples"][id_]["answer"] = st
    return {
        "format": SHARD_FORMAT,
        "purpose": purpose,
        "suite": "muse",
        "rank": rank,
        "world_size": world_size,
        "dataset_hash": dataset.hash,
        "splits": splits,
    }


def merge_muse(
    merged: dict[str, dict[str, Any]], cfg: EvalConfig, retain_reference: dict[str, Any] | None
) -> dict[str, Any]:
    """The MUSE metrics from the merged shards (the keys of ``merge_shards``' result)."""
    from unlearn.eval.merge import by_role, mia_aucs, split_metrics
    from unlearn.eval.metrics import privleak, rel_diff, selection_score

    forget, holdout = by_role(merged, "forget"), by_role(merged, "holdout")
    if forget is None or holdout is None:
        raise DataError("the MUSE shards hold no privleak forget or holdout split")
    splits: dict[str, dict[str, float]] = {}
    skipped: dict[str, str] = {}
    for name, part in merged.items():
        splits[name], why = split_metrics(part)
        skipped.update({f"{name}.{m}": w for m, w in why.items() if m != "truth_ratio"})
    aucs = mia_aucs(merged, forget, holdout, cfg.mia_attacks, retain_reference)
    for a in cfg.mia_attacks:
        if a not in aucs:
            skipped[f"mia.{a}"] = "no retain model: the reference attack needs its per-passage NLL"
    pl = rd = pl_ref = pl_reason = None
    if retain_reference is not None:
        if retain_reference.get("forget_split_hash") != merged[forget]["hash"]:
            raise DataError(
                f"the retain reference was computed on {retain_reference.get('forget_split')!r} "
                f"with other content than this evaluation's {forget!r}"
            )
        ref_auc = (retain_reference.get("mia_auc") or {}).get(cfg.privleak_attack)
        pl_ref = "retain model"
    else:
        ref_auc = cfg.privleak_reference_auc
        if ref_auc is not None:
            pl_ref = f"fixed AUC {ref_auc:g} (no retain model; open-unlearning's fallback)"
    if ref_auc is None:
        pl_reason = (
            f"the retain reference has no {cfg.privleak_attack} AUC"
            if retain_reference is not None
            else "no retain model: privleak compares the MIA AUC with the retain model's (or set "
            "privleak_reference_auc: 0.5, open-unlearning's fallback)"
        )
        pl_ref = None
    else:
        auc = mia_aucs(merged, forget, holdout, [cfg.privleak_attack])[cfg.privleak_attack]
        pl, rd = privleak(auc, ref_auc), rel_diff(auc, ref_auc)
    retain_qa = by_role(merged, "knowmem_retain")
    mu = splits.get(retain_qa, {}).get("muse_knowmem") if retain_qa else None
    components = {f"{retain_qa}.muse_knowmem": mu} if mu is not None else {}
    mu_reason = None if mu is not None else "generation is off: MUSE's utility is KnowMem on retain"
    score, formula = selection_score(cfg.score, None, mu, None)
    examples = []
    for role in ("knowmem_forget", "verbmem", "knowmem_retain"):
        name = by_role(merged, role)
        for id_, ex in (
            list(merged[name]["examples"].items())[: cfg.report_examples] if name else []
        ):
            if "generation" in ex:
                examples.append(
                    {"split": name, "role": role, "id": id_, "question": ex["question"],
                     "answer": ex["answer_text"], "generation": ex["generation"]["text"]}
                )  # fmt: skip
    reference_info = None
    if retain_reference is not None:
        reference_info = {
            "model_hash": retain_reference.get("model_hash"),
            "mia_auc": retain_reference.get("mia_auc"),
        }
    return {
        "suite": "muse",
        "forget_quality": None,
        "forget_quality_reason": "MUSE defines no forget quality (TOFU's KS test on truth ratios)",
        "model_utility": mu,
        "model_utility_reason": mu_reason,
        "privleak": pl,
        "privleak_reason": pl_reason,
        "privleak_reference": pl_ref,
        "rel_diff": rd,
        "rel_diff_reason": pl_reason,
        "score": score,
        "score_formula": formula,
        "splits": splits,
        "mia": {a: {"auc": v} for a, v in aucs.items()},
        "model_utility_components": components,
        "roles": {n: p["role"] for n, p in merged.items()},
        "rows": {n: p["n_total"] for n, p in merged.items()},
        "skipped": skipped,
        "retain_reference": reference_info,
        "examples": examples,
    }
