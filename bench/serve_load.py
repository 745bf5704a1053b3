"""Serving under load: latency, throughput and what the guard adds, over HTTP on 127.0.0.1.

    .venv/bin/python bench/serve_load.py                  # 200 requests per route, 8 concurrent
    .venv/bin/python bench/serve_load.py --requests 40    # smoke test
    .venv/bin/python bench/serve_load.py --model runs/demo/npo/model --index runs/demo/guard \\
        --data runs/demo/data                             # the demo's model and guard

This process starts a local Ray and the serving application (one model replica, one ingress, the
transformers engine on CPU) with the bench-only model-only route switched on; a second process on
127.0.0.1 sends the load: ``--requests`` chat requests per route, ``--concurrency`` at a time,
half of them streamed (``stream_options.include_usage``), greedy, to the guarded route
(``/v1/chat/completions``: input guard + StreamGuard) and to the model-only route
(``/bench/model-only/v1/chat/completions``: the same ingress and model, no guard). The routes
alternate in rounds so that background load hits both alike. Questions are about retain
entities (the guard passes them), so both routes generate the same text and the latency
difference is the guard's. Without ``--model`` a nano model is trained for a few seconds on a
synthetic dataset (it memorizes its answers: realistic lengths, natural EOS).

Last stdout line: one JSON object with ``p50_ms``, ``p99_ms`` (guarded, to the last byte),
``errors_5xx`` (both routes), ``guard_overhead`` (guarded / model-only median latency; target
<= 1.10), ``tokens_per_s`` (completion tokens / wall time of the guarded rounds), the model-only
numbers and the guard's own time per request from the app's metrics.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

GUARDED = "/v1/chat/completions"
MODEL_ONLY = "/bench/model-only/v1/chat/completions"


def percentile(xs: list[float], q: float) -> float:
    """The q-th percentile (nearest rank)."""
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(q / 100 * len(s)) - 1))]


# -- the load generator (second process) ----------------------------------------------------------
def one_request(session, base: str, route: str, key: str, body: dict) -> dict:
    """Send one request; latency to the last byte, status, completion tokens."""
    started = time.perf_counter()
    headers = {"Authorization": f"Bearer {key}"}
    tokens = 0
    first = None
    with session.post(
        base + route, json=body, headers=headers, stream=body["stream"], timeout=300
    ) as r:
        status = r.status_code
        if status == 200 and body["stream"]:
            for line in r.iter_lines():
                if not line.startswith(b"data: ") or line == b"data: [DONE]":
                    continue
                obj = json.loads(line[6:])
                if (
                    obj.get("choices")
                    and obj["choices"][0]["delta"].get("content")
                    and first is None
                ):
                    first = time.perf_counter() - started
                if obj.get("usage"):
                    tokens = obj["usage"]["completion_tokens"]
        elif status == 200:
            tokens = r.json()["usage"]["completion_tokens"]
        else:
            r.content  # noqa: B018 - read the error body
    return {
        "route": route,
        "status": status,
        "ms": (time.perf_counter() - started) * 1000,
        "first_ms": None if first is None else first * 1000,
        "tokens": tokens,
        "stream": body["stream"],
    }


def run_round(base: str, key: str, route: str, bodies: list[dict], concurrency: int) -> list[dict]:
    """``bodies`` to ``route`` from ``concurrency`` threads (one HTTP session each)."""
    import requests

    lock = threading.Lock()
    todo = list(bodies)
    results: list[dict] = []

    def worker() -> None:
        with requests.Session() as s:
            while True:
                with lock:
                    if not todo:
                        return
                    body = todo.pop()
                try:
                    res = one_request(s, base, route, key, body)
                except requests.RequestException as exc:
                    res = {"route": route, "status": f"error: {exc!r}", "ms": None, "tokens": 0}
                with lock:
                    results.append(res)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def client_main(args: argparse.Namespace) -> int:
    """Run the rounds described in ``--plan`` and print every result as one JSON line."""
    plan = json.loads(Path(args.plan).read_text())
    results, rounds = [], []
    cpu = "process_cpu_seconds_total"  # of the ingress replica (the app's /metrics)
    for rnd in plan["rounds"]:
        before = scrape(plan["metrics"]).get(cpu, 0.0)
        started = time.perf_counter()
        results += run_round(
            plan["base"], plan["key"], rnd["route"], rnd["bodies"], plan["concurrency"]
        )
        wall = time.perf_counter() - started
        rounds.append(
            {
                "route": rnd["route"],
                "wall_s": wall,
                "n": len(rnd["bodies"]),
                "ingress_cpu_s": scrape(plan["metrics"]).get(cpu, 0.0) - before,
            }
        )
    print(json.dumps({"results": results, "rounds": rounds}))
    return 0


# -- the server side (this process) -----------------------------------------------------------------
def train_model(out: Path, steps: int) -> tuple[Path, Path]:
    """A synthetic dataset and a nano model that memorized it (seconds on a CPU)."""
    import random

    import torch

    from unlearn.data import Dataset, write_dataset
    from unlearn.data.synth import synthesize
    from unlearn.models import (
        IGNORE_INDEX,
        build_tiny_model,
        dataset_texts,
        encode_qa,
        save_model,
        train_tokenizer,
    )

    data = out / "data"
    splits, pairs = synthesize(20, 4, seed=3)
    write_dataset(data, splits, source="unlearn.synth", seed=3, pairs=pairs)
    ds = Dataset(data)
    tok = train_tokenizer(dataset_texts([r for s in ds.splits for r in ds.records(s)]), 512)
    model = build_tiny_model(tok, "nano", max_positions=256, seed=0)
    rows = ds.records("full")
    enc = [encode_qa(tok, r["question"], r["answer"], 96) for r in rows]
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3)
    rng = random.Random(0)
    torch.set_num_threads(1)
    for _ in range(steps):
        batch = rng.sample(enc, 32)
        width = max(len(e["input_ids"]) for e in batch)
        ids = torch.full((32, width), tok.pad_token_id)
        labels = torch.full((32, width), IGNORE_INDEX)
        mask = torch.zeros((32, width), dtype=torch.long)
        for i, e in enumerate(batch):
            n = len(e["input_ids"])
            ids[i, :n], labels[i, :n], mask[i, :n] = (
                torch.tensor(e["input_ids"]),
                torch.tensor(e["labels"]),
                1,
            )
        model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
        opt.step()
        opt.zero_grad()
    save_model(model.eval(), tok, out / "model")
    return out / "model", data


def scrape(url: str) -> dict[str, float]:
    """Prometheus text -> {sample name with labels: value}."""
    import requests

    out = {}
    for line in requests.get(url, timeout=10).text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def summarize(results: list[dict], rounds: list[dict], route: str) -> dict:
    """Latency percentiles, 5xx count, tokens/s of one route."""
    rs = [r for r in results if r["route"] == route]
    ok = [r for r in rs if r["status"] == 200]
    lat = [r["ms"] for r in ok]
    firsts = [r["first_ms"] for r in ok if r.get("first_ms") is not None]
    wall = sum(x["wall_s"] for x in rounds if x["route"] == route)
    return {
        "n": len(rs),
        "ok": len(ok),
        "errors_5xx": sum(1 for r in rs if isinstance(r["status"], int) and r["status"] >= 500),
        "errors_other": sum(1 for r in rs if not isinstance(r["status"], int)),
        "p50_ms": round(statistics.median(lat), 2) if lat else None,
        "p99_ms": round(percentile(lat, 99), 2) if lat else None,
        "stream_first_text_p50_ms": round(statistics.median(firsts), 2) if firsts else None,
        "tokens": sum(r["tokens"] for r in ok),
        "ingress_cpu_ms_per_request": round(
            1000 * sum(x["ingress_cpu_s"] for x in rounds if x["route"] == route) / max(1, len(rs)),
            3,
        ),
        "tokens_per_s": round(sum(r["tokens"] for r in ok) / wall, 1) if wall else None,
    }


def main(argv: list[str] | None = None) -> int:
    """Start the app, run the load from a second process, print the summary."""
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--requests", type=int, default=200, help="requests per route")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--stream-fraction", type=float, default=0.5)
    p.add_argument("--rounds", type=int, default=4, help="rounds per route (alternating)")
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--model", help="a model directory (default: train a nano model)")
    p.add_argument("--index", help="its guard index (default: built from --data's forget10)")
    p.add_argument("--data", help="the dataset (questions; required with --model)")
    p.add_argument("--embeddings", action="store_true", help="guard with the embedding layer")
    p.add_argument("--steps", type=int, default=150, help="training steps of the nano model")
    p.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--plan", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.client:
        return client_main(args)

    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import socket

    from ray import serve

    from jobs.common import init_ray
    from serve.app import deploy, deploy_config, warm_up
    from serve.config import guards_config, parse_serve_config
    from unlearn.data import Dataset
    from unlearn.guard.index import build_from_dataset, save_index

    def free_port() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    work = Path(tempfile.mkdtemp(prefix="serve-bench-"))
    t0 = time.time()
    if args.model:
        if not args.data:
            p.error("--model needs --data (the questions come from its retain split)")
        model, data = Path(args.model), Path(args.data)
    else:
        model, data = train_model(work, args.steps)
    ds = Dataset(data)
    index = Path(args.index) if args.index else work / "guard"
    if not args.index:
        save_index(build_from_dataset(ds, ["forget10"], embeddings=args.embeddings), index)
    print(f"model {model}, guard {index} ({time.time() - t0:.0f}s to prepare)", file=sys.stderr)

    key = "sk-bench-" + secrets.token_urlsafe(16)
    os.environ["UNLEARN_API_KEYS"] = key
    port, mport = free_port(), free_port()
    cfg = parse_serve_config(
        {
            "models": {"m": str(model)},
            "metrics_port": mport,
            "bench_model_only_route": True,
            "engine_options": {"torch_threads": 1},
        }
    )
    guards = guards_config(
        {"guards": {"m": {"index": str(index), "overrides": {"embeddings": args.embeddings}}}}
    )
    init_ray(num_cpus=4)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        deploy(deploy_config(cfg, guards, port=port))
        warm_up(["m"])
        retain = ds.records(ds.paired_split("forget10", "retain") or "retain90")
        f = args.stream_fraction

        def bodies(n: int, offset: int) -> list[dict]:
            out = []
            for i in range(n):
                r = retain[(offset + i) % len(retain)]
                body = {
                    "model": "m",
                    "messages": [{"role": "user", "content": r["question"]}],
                    "temperature": 0,
                    "max_tokens": args.max_tokens,
                    "stream": int((i + 1) * f) > int(i * f),  # a fraction f, evenly spread
                    "user": f"bench-{offset + i}",
                }
                if body["stream"]:
                    body["stream_options"] = {"include_usage": True}
                out.append(body)
            return out

        per_round = max(1, args.requests // args.rounds)
        plan_rounds = []
        for k in range(args.rounds):
            for route in (GUARDED, MODEL_ONLY) if k % 2 == 0 else (MODEL_ONLY, GUARDED):
                plan_rounds.append({"route": route, "bodies": bodies(per_round, k * per_round)})
        plan = {
            "base": f"http://127.0.0.1:{port}",
            "metrics": f"http://127.0.0.1:{mport}/metrics",
            "key": key,
            "concurrency": args.concurrency,
            "rounds": plan_rounds,
        }
        plan_file = work / "plan.json"
        plan_file.write_text(json.dumps(plan))
        before = scrape(f"http://127.0.0.1:{mport}/metrics")
        proc = subprocess.run(
            [sys.executable, __file__, "--client", "--plan", str(plan_file)],
            capture_output=True,
            text=True,
            timeout=3600,
        )
        if proc.returncode != 0:
            print(proc.stderr[-4000:], file=sys.stderr)
            return 1
        after = scrape(f"http://127.0.0.1:{mport}/metrics")
    finally:
        serve.shutdown()
    load = json.loads(proc.stdout.strip().splitlines()[-1])
    g = summarize(load["results"], load["rounds"], GUARDED)
    m = summarize(load["results"], load["rounds"], MODEL_ONLY)

    def delta(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    guard_in = delta('unlearn_serve_guard_seconds_sum{direction="input"}')
    guard_out = delta('unlearn_serve_guard_seconds_sum{direction="output"}')
    n_guarded = delta('unlearn_serve_guard_seconds_count{direction="input"}') or 1
    overhead = round(g["p50_ms"] / m["p50_ms"], 3) if g["p50_ms"] and m["p50_ms"] else None
    print(f"guarded:    {g}", file=sys.stderr)
    print(f"model-only: {m}", file=sys.stderr)
    try:
        load_avg = round(os.getloadavg()[0], 2)
    except OSError:
        load_avg = None
    summary = {
        "p50_ms": g["p50_ms"],
        "p99_ms": g["p99_ms"],
        "errors_5xx": g["errors_5xx"] + m["errors_5xx"],
        "guard_overhead": overhead,
        "tokens_per_s": g["tokens_per_s"],
        "model_only_p50_ms": m["p50_ms"],
        "model_only_p99_ms": m["p99_ms"],
        "model_only_tokens_per_s": m["tokens_per_s"],
        "stream_first_text_p50_ms": g["stream_first_text_p50_ms"],
        "model_only_stream_first_text_p50_ms": m["stream_first_text_p50_ms"],
        "guard_ms_per_request": round((guard_in + guard_out) / n_guarded * 1000, 3),
        "ingress_cpu_ms_per_request": g["ingress_cpu_ms_per_request"],
        "model_only_ingress_cpu_ms_per_request": m["ingress_cpu_ms_per_request"],
        # the guard's extra CPU per request over the model-only median latency: what the guard
        # would add with a core to itself (the wall ratio above also counts waiting for a core)
        "guard_cpu_share_of_p50": round(
            (g["ingress_cpu_ms_per_request"] - m["ingress_cpu_ms_per_request"]) / m["p50_ms"], 4
        )
        if m["p50_ms"]
        else None,
        "guard_input_ms_per_request": round(guard_in / n_guarded * 1000, 3),
        "requests_per_route": g["n"],
        "ok": {"guarded": g["ok"], "model_only": m["ok"]},
        "errors_other": g["errors_other"] + m["errors_other"],
        "concurrency": args.concurrency,
        "stream_fraction": args.stream_fraction,
        "max_tokens": args.max_tokens,
        "embeddings": args.embeddings,
        "load_average": load_avg,
        "target_met": overhead is not None
        and overhead <= 1.10
        and g["errors_5xx"] + m["errors_5xx"] == 0,
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
