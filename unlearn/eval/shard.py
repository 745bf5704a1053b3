"""Per-rank evaluation: run the model over this rank's plan and return per-example statistics.

``evaluate_shard`` returns plain JSON keyed by example id (teacher-forced statistics, greedy
generations with their ROUGE), so shards travel between processes and merge in any order.
"""

from __future__ import annotations

from typing import Any

from unlearn.eval import scoring
from unlearn.eval.config import EvalConfig
from unlearn.eval.fluency import dataset_vocabulary
from unlearn.eval.metrics import FORWARD_ATTACKS, MIA_ATTACKS, rouge
from unlearn.eval.plan import SplitPlan, make_plan, plan_splits, plan_work
from unlearn.models.prompting import IGNORE_INDEX, encode_prompt, encode_qa

SHARD_FORMAT = 1


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
    if cfg.suite == "muse":
        from unlearn.eval.muse import evaluate_muse_shard

        return evaluate_muse_shard(
            model, tokenizer, dataset, cfg, rank, world_size, synced, purpose=purpose
        )
    plans = plan_splits(dataset, cfg, rank, world_size, purpose)
    pad: dict[str, Any] = {}
    if synced:
        work = [
            plan_work(plan_splits(dataset, cfg, r, world_size, purpose)) for r in range(world_size)
        ]
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
        "splits": run_plans(
            model,
            tokenizer,
            plans,
            cfg,
            synced=synced,
            vocabulary=dataset_vocabulary(dataset)
            if cfg.generation and purpose == "metrics"
            else None,
            **pad,
        ),
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
    vocabulary: frozenset[str] | None = None,
) -> dict[str, Any]:
    """Score and generate everything ``plans`` ask for, batched across splits; {split: part}.
    ``vocabulary``: the dataset's words, for each answer's ``novel_words``."""
    wanted = list(dict.fromkeys([*cfg.mia_attacks, cfg.privleak_attack]))
    attacks = {n: MIA_ATTACKS[n].attack for n in wanted if n in FORWARD_ATTACKS}
    gradient = [n for n in wanted if MIA_ATTACKS[n].computed == "gradient"]
    if gradient and synced:
        raise ValueError(
            "the gradient-norm attack runs a backward pass per example: not under ZeRO-3"
        )
    items: list[scoring.ScoreItem] = []
    item_keys: list[tuple[str, str, str]] = []  # (split, id, answer | paraphrased | perturbed)
    prompts: list[list[int]] = []
    prompt_keys: list[tuple[str, str, str, str]] = []  # (split, id, kind, reference text)
    extra_refs: dict[tuple[str, str], tuple[str, list[str]]] = {}  # paraphrased, perturbed
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
                if p.truth_ratio and p.role in ("forget", "retain"):
                    # OU's PARA / PERT ROUGE: the same answer against the other references
                    extra_refs[(p.name, r["id"])] = (
                        r["paraphrased_answer"],
                        list(r["perturbed_answers"]),
                    )
            if p.verbmem:
                prefix, truth = _verbmem_prompt(tokenizer, r, cfg)
                prompts.append(prefix)
                prompt_keys.append((p.name, r["id"], "verbmem", truth))

    roles_of = {p.name: p.role for p in plans}
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
        if gradient:
            mia_rows = [
                i
                for i, (split, _, kind) in enumerate(item_keys)
                if kind == "answer" and roles_of[split] in ("forget", "holdout")
            ]
            norms = scoring.gradient_norms(
                model, [encoded[i] for i in mia_rows], cfg.gradnorm_p, tokenizer.eos_token_id
            )
            for i, per_param in zip(mia_rows, norms):
                for name in gradient:
                    stats[i]["mia"][name] = MIA_ATTACKS[name].attack(param_grad_norms=per_param)
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
        if kind == "generation" and (split, id_) in extra_refs:
            para, pert = extra_refs[(split, id_)]
            gen = splits[split]["examples"][id_][kind]
            gen["vs_paraphrased"] = rouge(text, para)["rouge_l_recall"]
            gen["vs_perturbed"] = [rouge(text, alt)["rouge_l_recall"] for alt in pert]
    add_fluency(
        splits,
        [(s, i) for s, i, kind, _ in prompt_keys if kind == "generation"],
        cfg,
        vocabulary,
        device=scoring.model_device(model),
    )
    return splits


def add_fluency(
    splits: dict[str, Any],
    keys: list[tuple[str, str]],
    cfg: EvalConfig,
    vocabulary: frozenset[str] | None = None,
    device: Any = None,
) -> None:
    """Each generation's words found nowhere in the dataset (``novel_words``, given its
    ``vocabulary``), NLL under ``cfg.fluency_model`` (``ref_nll``) and gibberish probability
    (``gibberish``), when configured; "retain" still unresolved here means no retain model."""
    from unlearn.eval import fluency

    if not keys:
        return
    gens = [splits[s]["examples"][i] for s, i in keys]
    if vocabulary is not None:
        for g in gens:
            g["generation"]["novel_words"] = fluency.novel_words(
                g["generation"]["text"], vocabulary
            )
    questions = [g["question"] for g in gens]
    texts = [g["generation"]["text"] for g in gens]
    if cfg.fluency_path is not None:
        nlls = fluency.reference_nlls(
            cfg.fluency_path,
            questions,
            texts,
            batch_size=cfg.batch_size,
            max_length=cfg.max_length + cfg.max_new_tokens,
            storage_options=cfg.fluency_storage_options,
            dtype=cfg.fluency_dtype,
            device=device,
        )
        for g, v in zip(gens, nlls):
            g["generation"]["ref_nll"] = v
    if cfg.gibberish_classifier:
        probs = fluency.gibberish_probability(texts, cfg.gibberish_classifier, cfg.batch_size)
        for g, v in zip(gens, probs):
            g["generation"]["gibberish"] = v
