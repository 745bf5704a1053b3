"""Guard check latency: p50/p99 for 200- and 2000-character inputs against forget indexes of 1k,
10k and 100k synthetic facts, lexical-only and with the semantic layer.

    .venv/bin/python bench/guard_latency.py            # full run (a few minutes on 2 cores)
    .venv/bin/python bench/guard_latency.py --quick    # smaller, for a smoke test

Indexes: the synthetic generator's people, 10 facts each; forget sets of 100 / 1,000 / 10,000
people (1k / 10k / 100k facts) plus a fixed retain set of 100 people (1k facts). The people are a
prefix of one generated list, so every index holds the same first entities and every input is
checked against all three sizes, interleaved (background load hits all sizes alike).
Inputs: half carry one forget fact somewhere, half only retain facts and general text; all mention
indexed entities, so the entity-gated layers do real work. "lexical" = normalization views, names,
values, content words and n-grams; "embeddings" adds the semantic layer (the real model encodes
the candidate sentences, one batch per check; fact vectors of the benchmark indexes are random
unit vectors of the model's shape, because embedding 100k facts on CPU takes longer than the
benchmark is worth: search cost depends on the shape, not the values). The semantic inputs each
also hold one statement about a forget entity that the lexical layers do not block (unique per
input, so the sentence cache never helps): every semantic check embeds at least one sentence.
Past 20k facts the entity-free search goes through an HNSW graph (hnswlib), built once before
timing, as a saved index carries it. Targets (issues 5 and 10): lexical p99 <= 5 ms at 10k facts
on 2000 chars; 100k facts <= 1.5x the time of 1k; with the semantic layer p99 <= 50 ms at 10k
facts on 2000 chars.

The last stdout line is one JSON object with keys ``p99_ms_10k_2000`` and ``growth_1k_to_100k``
(wall-clock p99 at 10k facts on 2000 chars, and p99 at 100k facts / at 1k facts, lexical),
``p99_ms_semantic_10k_2000`` (with the semantic layer), the same from CPU time (``cpu_*``: what a
check costs, unaffected by other processes on a shared machine), the sentences embedded per
check, the load average, and every measurement.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import time

import numpy as np

from unlearn.data.synth import make_people, person_rows
from unlearn.guard import Guard, GuardConfig, embed
from unlearn.guard.index import GuardIndex, compile_index

FACTS_PER_PERSON = 10
RETAIN_PEOPLE = 100
SIZES = {"1k": 100, "10k": 1_000, "100k": 10_000}  # forget people per index
FILLER = [
    "The weather was mild and the market square was busy with traders.",
    "Can you summarize the main points in a few bullet points?",
    "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen.",
    "Please answer briefly and cite your sources where possible.",
    "The train left the station at noon and arrived two hours later.",
    "Binary search halves the interval at every step of the loop.",
]


def make_rows(max_people: int, seed: int = 0) -> tuple[list[list[dict]], list[dict]]:
    """Rows per forget person (a prefix serves every size) and the retain rows."""
    rng = random.Random(seed)
    people = make_people(RETAIN_PEOPLE + max_people, rng)
    rows = [person_rows(p, i, FACTS_PER_PERSON, rng) for i, p in enumerate(people)]
    retain = [r for block in rows[:RETAIN_PEOPLE] for r in block]
    return rows[RETAIN_PEOPLE:], retain


def build(forget_blocks: list[list[dict]], retain: list[dict], n_people: int, dim: int | None):
    """Compile an index in memory; with ``dim`` attach random unit embeddings of that width."""
    forget = [r for block in forget_blocks[:n_people] for r in block]
    parts = compile_index(forget, retain, embeddings=False)
    if dim:
        rng = np.random.default_rng(0)
        n = len(parts.facts["rows"])
        n_forget = parts.manifest["counts"]["forget_facts"]

        def unit(k: int) -> np.ndarray:
            v = rng.standard_normal((k, dim)).astype(np.float32)
            return v / np.linalg.norm(v, axis=1, keepdims=True)

        parts.arrays["fact_embeddings"] = unit(n)
        parts.arrays["question_embeddings"] = unit(n_forget)
        parts.arrays["question2_embeddings"] = unit(n_forget)
        parts.manifest["embedding"] = {"model": embed.MODEL_NAME, "dim": dim, "random": True}
    return GuardIndex(parts)


def make_inputs(
    forget_blocks: list[list[dict]], retain: list[dict], chars: int, n: int, seed: int
) -> list[str]:
    """Texts of about ``chars`` characters; every other one carries a forget fact."""
    rng = random.Random(seed)
    sample_forget = [r for block in forget_blocks[:100] for r in block]
    out = []
    for i in range(n):
        parts: list[str] = []
        fact = rng.choice(sample_forget)["answer"] if i % 2 == 0 else None
        while sum(len(p) + 1 for p in parts) < chars:
            pick = rng.random()
            if pick < 0.4:
                parts.append(rng.choice(retain)["answer"])
            elif pick < 0.6:
                parts.append(rng.choice(sample_forget)["question"])
            else:
                parts.append(rng.choice(FILLER))
        if fact:
            parts.insert(rng.randrange(len(parts) + 1), fact)
        text = " ".join(parts)
        out.append(text[:chars] if not fact else text[: max(chars, len(fact) + 1)])
    return out


def make_semantic_inputs(
    forget_blocks: list[list[dict]], retain: list[dict], chars: int, n: int, seed: int
) -> list[str]:
    """``make_inputs`` plus one unblocked statement about a forget entity in each (unique)."""
    rng = random.Random(seed)
    base = make_inputs(forget_blocks, retain, chars, n, seed)
    out = []
    for i, text in enumerate(base):
        person = rng.choice(forget_blocks[:100])[0]["entity"]
        extra = f"{person} enjoyed a long walk by the river on afternoon number {i} of the trip."
        cut = max(0, len(text) - len(extra) - 1)
        out.append(text[:cut] + " " + extra if len(text) >= chars else text + " " + extra)
    return out


def measure(
    guards: dict[str, Guard], inputs: list[str], warmup: int = 20
) -> dict[str, tuple[list[float], list[float]]]:
    """(wall ms, CPU ms) per check for each guard, inputs interleaved across guards."""
    times: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in guards}
    for text in inputs[:warmup]:
        for g in guards.values():
            g.check(text)
    gc.collect()
    gc.disable()
    try:
        for text in inputs:
            for k, g in guards.items():
                t0, c0 = time.perf_counter(), time.thread_time()
                d = g.check(text)
                c1, t1 = time.thread_time(), time.perf_counter()
                times[k][0].append((t1 - t0) * 1000.0)
                times[k][1].append((c1 - c0) * 1000.0)
                if d.reason == "guard_error":
                    raise RuntimeError(f"guard error while benchmarking {k}")
    finally:
        gc.enable()
    return times


def _count_sentences(guards: dict[str, Guard]) -> list[int]:
    """Wrap the (shared) embedder so that the sentences it encodes are counted."""
    counter = [0]
    embedder = next(iter(guards.values())).embedder
    orig = embedder.encode

    def encode(texts: list[str], **kw) -> np.ndarray:
        counter[0] += len(texts)
        return orig(texts, **kw)

    for g in guards.values():
        g.embedder.encode = encode
    return counter


def stats(wall: list[float], cpu: list[float]) -> dict[str, float]:
    """Wall-clock p50 / p99 / mean and CPU-time p50 / p99, in milliseconds."""
    a, c = np.asarray(wall), np.asarray(cpu)
    return {
        "p50_ms": round(float(np.percentile(a, 50)), 3),
        "p99_ms": round(float(np.percentile(a, 99)), 3),
        "mean_ms": round(float(a.mean()), 3),
        "cpu_p50_ms": round(float(np.percentile(c, 50)), 3),
        "cpu_p99_ms": round(float(np.percentile(c, 99)), 3),
        "n": len(wall),
    }


def main() -> None:
    """Run the benchmark and print a table, then the JSON line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer inputs, for a smoke test")
    ap.add_argument("--no-embeddings", action="store_true")
    ap.add_argument("--n", type=int, default=None, help="inputs per length (lexical)")
    args = ap.parse_args()
    n_lex = args.n or (100 if args.quick else 1000)
    n_emb = 10 if args.quick else 40
    use_emb = embed.available() and not args.no_embeddings

    forget_blocks, retain = make_rows(max(SIZES.values()))
    results: dict[str, dict] = {}
    build_s: dict[str, float] = {}
    lexical, semantic = {}, {}
    sentences: dict[int, float] = {}
    for name, people in SIZES.items():
        t0 = time.perf_counter()
        ix = build(forget_blocks, retain, people, 384 if use_emb else None)
        if use_emb:
            ix.ann("forget")  # the HNSW graph past 20k facts (built once, as a saved index has it)
            ix.ann("retain")
        build_s[name] = round(time.perf_counter() - t0, 2)
        lexical[name] = Guard(ix, GuardConfig(embeddings=False, timeout_ms=60_000))
        if use_emb:
            # a long timeout: a timed-out check fails closed, which would hide its latency
            semantic[name] = Guard(ix, GuardConfig(embeddings=True, timeout_ms=60_000))
        print(f"built {name}: {ix.n_forget_facts} forget facts in {build_s[name]} s", flush=True)

    for chars in (200, 2000):
        inputs = make_inputs(forget_blocks, retain, chars, n_lex, seed=chars)
        for name, (wall, cpu) in measure(lexical, inputs).items():
            results[f"lexical_{name}_{chars}"] = stats(wall, cpu)
        if use_emb:
            inputs = make_semantic_inputs(forget_blocks, retain, chars, n_emb, seed=chars + 1)
            counted = _count_sentences(semantic)
            for name, (wall, cpu) in measure(semantic, inputs, warmup=3).items():
                results[f"embeddings_{name}_{chars}"] = stats(wall, cpu)
            n_checks = (len(inputs) + 3) * len(semantic)
            sentences[chars] = round(counted[0] / max(1, n_checks), 2)

    print(
        f"{'mode':<12}{'facts':>7}{'chars':>7}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'cpu p50':>9}{'cpu p99':>9}{'n':>6}"
    )
    for key, r in results.items():
        mode, size, chars = key.split("_")
        print(
            f"{mode:<12}{size:>7}{chars:>7}{r['p50_ms']:>9.3f}{r['p99_ms']:>9.3f}"
            f"{r['cpu_p50_ms']:>9.3f}{r['cpu_p99_ms']:>9.3f}{r['n']:>6}"
        )
    sem = results.get("embeddings_10k_2000", {})
    lo, mid, hi = (results[f"lexical_{k}_2000"] for k in ("1k", "10k", "100k"))
    growth = hi["p99_ms"] / lo["p99_ms"]
    summary = {
        "p99_ms_10k_2000": mid["p99_ms"],
        "growth_1k_to_100k": round(growth, 3),
        "cpu_p99_ms_10k_2000": mid["cpu_p99_ms"],
        "cpu_growth_1k_to_100k": round(hi["cpu_p99_ms"] / lo["cpu_p99_ms"], 3),
        "growth_1k_to_100k_p50": round(hi["p50_ms"] / lo["p50_ms"], 3),
        "p99_ms_semantic_10k_2000": sem.get("p99_ms"),
        "cpu_p99_ms_semantic_10k_2000": sem.get("cpu_p99_ms"),
        "semantic_sentences_per_check": sentences,
        "targets_met": mid["p99_ms"] <= 5.0
        and growth <= 1.5
        and (not use_emb or (sem.get("p99_ms") or 1e9) <= 50.0),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
        "build_s": build_s,
        "embeddings": use_emb,
        "results": results,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
