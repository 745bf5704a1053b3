"""The training recipe every worker runs: setup -> reference cache -> loop -> checkpoint -> export.

Read top to bottom. No Ray here: a ``Session`` (unlearn.engine.session) says which rank this is,
where the latest checkpoint is, and how to report. jobs/finetune.py and jobs/unlearn.py run this
function in Ray Train workers; bench/gpu_step.py and tests run it in a single process.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from unlearn import storage
from unlearn.data import Dataset
from unlearn.engine import reference, run_dir
from unlearn.engine.backend import make_backend
from unlearn.engine.config import RunConfig
from unlearn.engine.context import Context
from unlearn.engine.data import Example, Schedule, collate, shard, tokenize
from unlearn.engine.distributed import all_reduce_sum, barrier
from unlearn.engine.evaluation import EpochEvaluator, headline
from unlearn.errors import DataError
from unlearn.methods import build_method
from unlearn.methods.common import nll_loss, sequence_logprobs
from unlearn.methods.idkdpo import idk_answer_for
from unlearn.models import load_model, save_model
from unlearn.models.io import model_identity


def data_hashes(cfg: RunConfig, dataset: Dataset) -> dict[str, Any]:
    """The dataset version and the content hash of every split a run reads."""
    splits = (
        cfg.data.train_splits
        if cfg.method.name == "finetune"
        else [cfg.data.forget_split, retain_split_name(cfg, dataset)]
    )
    return {"dataset": dataset.hash, "splits": {s: dataset.split_hash(s) for s in splits if s}}


def retain_split_name(cfg: RunConfig, dataset: Dataset) -> str | None:
    """The retain split: configured, else the forget split's pair in dataset.json."""
    return cfg.data.retain_split or (dataset.info.pairs.get(cfg.data.forget_split) or {}).get(
        "retain"
    )


def build_streams(
    cfg: RunConfig, streams: tuple[str, ...], dataset: Dataset, tokenizer: Any
) -> dict[str, list[Example]]:
    """Tokenized examples per stream: "forget" (the training data for finetune), "retain", "idk"."""
    n = cfg.data.max_length
    if cfg.method.name == "finetune":
        records = [r for split in cfg.data.train_splits for r in dataset.records(split)]
        return {"forget": tokenize(tokenizer, records, n)}
    forget = dataset.records(cfg.data.forget_split)
    out = {"forget": tokenize(tokenizer, forget, n)}
    if "retain" in streams:
        name = retain_split_name(cfg, dataset)
        if name is None:
            raise DataError(
                f"method {cfg.method.name!r} needs a retain split: set data.retain_split (dataset {cfg.data.path} records no pair for {cfg.data.forget_split!r})"
            )
        dataset.pair(cfg.data.forget_split, name)  # forget and retain must share no entity
        out["retain"] = tokenize(tokenizer, dataset.records(name), n)
    if "idk" in streams:
        out["idk"] = tokenize(
            tokenizer, [{**r, "answer": idk_answer_for(r["id"])} for r in forget], n
        )
    return out


def split_losses(
    forward: Any,
    streams: dict[str, list[Example]],
    session: Any,
    pad_id: int,
    batch_size: int,
    primary: str = "forget",
) -> dict[str, float]:
    """Mean answer NLL of the whole forget and retain streams (teacher-forced, all workers).

    Keys ``forget_nll`` / ``retain_nll``; ``primary`` renames the first (``train`` for finetune).
    """
    out = {}
    for name in ("forget", "retain"):
        if name in streams:
            stats = reference.stream_logprobs(
                forward,
                streams[name],
                batch_size=batch_size,
                rank=session.rank,
                world_size=session.world_size,
                pad_id=pad_id,
                device=session.device,
            )
            out[f"{primary if name == 'forget' else name}_nll"] = reference.mean_nll(stats)
    return out


def train(cfg: RunConfig, session: Any) -> dict[str, Any]:
    """Run one fine-tuning or unlearning job on this worker; returns the run summary (rank 0)."""
    t_start = time.time()
    torch.manual_seed(cfg.train.seed)
    opts = cfg.data.storage_options
    dataset = Dataset(cfg.data.path, opts)
    model, tokenizer = load_model(cfg.model.path, dtype=cfg.model.dtype, storage_options=opts)
    model.config.use_cache = False
    method = build_method(cfg.method)
    if hasattr(method, "prepare_model"):
        method.prepare_model(model)
    streams = build_streams(cfg, method.streams, dataset, tokenizer)
    pad_id = tokenizer.pad_token_id
    device = session.device

    # One-shot methods (SSD) edit the weights directly: no optimizer, no loop.
    if getattr(method, "one_shot", False):
        return one_shot(cfg, session, method, model, tokenizer, streams, pad_id, t_start)

    schedule = Schedule(
        primary_size=len(streams["forget"]),
        retain_size=len(streams.get("retain", [])),
        batch_size=cfg.train.batch_size,
        micro_batch_size=cfg.train.micro_batch_size,
        world_size=session.world_size,
        seed=cfg.train.seed,
    )
    total_steps = schedule.steps_per_epoch * cfg.train.epochs
    warmup_steps = math.floor(cfg.train.warmup_epochs * schedule.steps_per_epoch)
    reference_model = None
    if method.needs_reference_model:
        reference_model, _ = load_model(
            cfg.model.path, dtype=cfg.model.dtype, storage_options=opts, with_tokenizer=False
        )
        reference_model.to(device).eval().requires_grad_(False)
    backend = make_backend(model, cfg, total_steps, warmup_steps, device, session.world_size)
    eval_batch = cfg.train.micro_batch_size * 2
    primary = "train" if cfg.method.name == "finetune" else "forget"  # names in the loss summary

    # Resume: weights, optimizer and schedule from the latest checkpoint; step counter continues.
    start_epoch, global_step, history = 0, 0, []
    with session.latest_checkpoint() as ckpt:
        if ckpt is not None:
            backend.load(Path(ckpt))
            state = json.loads((Path(ckpt) / "trainer_state.json").read_text())
            start_epoch, global_step = state["epoch"] + 1, state["global_step"]
            history = [
                json.loads(line)
                for line in (Path(ckpt) / "history.jsonl").read_text().splitlines()
                if line
            ]
            history.append({"resumed_at_step": global_step, "resumed_at_epoch": start_epoch})
        barrier()

    # Reference log-probs: computed once from the starting model, before any update, and stored
    # with the run; a resumed run reads them back (its weights are no longer the reference).
    ref_cache: dict[str, torch.Tensor] = {}
    if method.cached_reference:
        cache_path = run_dir.path(cfg, reference.CACHE_FILE)
        meta = {
            "model": model_identity(cfg.model.path, opts),
            "streams": {s: len(streams[s]) for s in method.cached_reference},
            "dataset": dataset.hash,
        }
        loaded = reference.load_cache(cache_path, meta, opts)
        if loaded is None:
            if start_epoch > 0:
                raise DataError(
                    f"{cache_path} is missing but the run is resuming at epoch {start_epoch}: the reference cannot be recomputed from trained weights"
                )
            for s in method.cached_reference:
                ref_cache[s] = reference.stream_logprobs(
                    backend.forward,
                    streams[s],
                    batch_size=eval_batch,
                    rank=session.rank,
                    world_size=session.world_size,
                    pad_id=pad_id,
                    device=device,
                )["sum"]
            if session.rank == 0:
                reference.save_cache(cache_path, ref_cache, meta, opts)
            barrier()
        else:
            ref_cache = loaded

    before = (
        history[0]["before"]
        if history and "before" in history[0]
        else split_losses(backend.forward, streams, session, pad_id, eval_batch, primary)
    )
    if not history:
        history.append({"before": before})
    hidden_layers = (cfg.method.layer,) if cfg.method.name == "rmu" else ()
    evaluator = None
    if cfg.eval is not None:
        synced = cfg.backend.kind == "deepspeed" and cfg.backend.zero_stage == 3
        evaluator = EpochEvaluator(cfg, dataset, tokenizer, session, synced)
        evaluator.prepare_reference()
    best = next((h["best"] for h in reversed(history) if "best" in h), None)

    backend.model.train()
    for epoch in range(start_epoch, cfg.train.epochs):
        for micro_batches in schedule.epoch(epoch, session.rank):
            t0 = time.time()
            terms: dict[str, float] = {}
            tokens = 0
            for mb in micro_batches:
                batch = {"forget": collate([streams["forget"][i] for i in mb["primary"]], pad_id)}
                if "retain" in streams:
                    batch["retain"] = collate([streams["retain"][i] for i in mb["retain"]], pad_id)
                if "idk" in streams:
                    batch["idk"] = collate([streams["idk"][i] for i in mb["primary"]], pad_id)
                batch = {k: {n: t.to(device) for n, t in b.items()} for k, b in batch.items()}
                ctx = Context(
                    backend.forward, batch, pad_id, hidden_layers, reference_model, ref_cache
                )
                out = method.compute(ctx)
                backend.backward(out.loss)
                tokens += sum(int(b["attention_mask"].sum()) for b in batch.values())
                for k, v in out.terms.items():
                    terms[k] = terms.get(k, 0.0) + v / len(micro_batches)
            backend.step()
            global_step += 1
            # Average the logged terms over workers (one small collective per step).
            keys = sorted(terms)
            packed = all_reduce_sum(
                torch.tensor([terms[k] for k in keys] + [float(tokens)], dtype=torch.float64)
            )
            record = {k: float(packed[i]) / session.world_size for i, k in enumerate(keys)}
            elapsed = time.time() - t0
            record.update(
                step=global_step,
                epoch=epoch,
                lr=backend.lr(),
                grad_norm=backend.grad_norm,
                tokens_per_s=float(packed[-1]) / max(elapsed, 1e-9),
                step_time_s=elapsed,
            )
            history.append(record)
            if session.rank == 0:
                session.progress({**record, "total_steps": total_steps})

        last_epoch = epoch + 1 == cfg.train.epochs
        if evaluator is not None and ((epoch + 1) % cfg.eval.every_n_epochs == 0 or last_epoch):
            numbers = headline(evaluator(backend.module))
            record = {"eval_epoch": epoch, "at_step": global_step, **numbers}
            # Every rank merged the same shards, so every rank takes the same decision here.
            if numbers["score"] is not None and (best is None or numbers["score"] > best["score"]):
                best = {
                    "epoch": epoch,
                    "step": global_step,
                    "score": numbers["score"],
                    "model_dir": run_dir.path(cfg, "best_model"),
                }
                state_dict = backend.export_state_dict()  # a collective under ZeRO-3
                if session.rank == 0:
                    export_model(cfg, backend.module, tokenizer, state_dict, best["model_dir"])
                record["best"] = best
            history.append(record)
            barrier()
        if (epoch + 1) % cfg.output.checkpoint_every == 0 or last_epoch:
            save_checkpoint(backend, session, epoch, global_step, history)

    after = split_losses(backend.forward, streams, session, pad_id, eval_batch, primary)
    state_dict = backend.export_state_dict()  # a collective under ZeRO-3
    summary = None
    if session.rank == 0:
        summary = finish(
            cfg,
            backend.module,
            tokenizer,
            state_dict,
            history,
            before,
            after,
            global_step,
            t_start,
            best,
        )

    barrier()
    return summary or {}


def save_checkpoint(
    backend: Any, session: Any, epoch: int, global_step: int, history: list[dict]
) -> None:
    """Every rank writes its part into a fresh local directory and reports it with the metrics."""
    tmp = Path(tempfile.mkdtemp(prefix="unlearn-ckpt-"))
    try:
        backend.save(tmp, session.rank)
        if session.rank == 0:
            (tmp / "trainer_state.json").write_text(
                json.dumps({"epoch": epoch, "global_step": global_step})
            )
            (tmp / "history.jsonl").write_text("".join(json.dumps(h) + "\n" for h in history))
        # the last step's numbers, plus the epoch's evaluation when there was one
        last_step = next(h for h in reversed(history) if "step" in h and "eval_epoch" not in h)
        evaluated = history[-1] if history[-1].get("eval_epoch") == epoch else {}
        metrics = {
            **{k: v for k, v in last_step.items() if isinstance(v, int | float)},
            **{k: v for k, v in evaluated.items() if isinstance(v, int | float)},
            "epoch": epoch,
            "step": global_step,
        }
        session.report(metrics, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def export_model(
    cfg: RunConfig, module: Any, tokenizer: Any, state_dict: dict | None, dest: str
) -> str:
    """Rank 0: a consolidated HF model dir (safetensors + tokenizer) at ``dest``; returns its hash."""
    if state_dict is not None and getattr(module.config, "tie_word_embeddings", False):
        state_dict.pop("lm_head.weight", None)  # tied to the embeddings; HF re-ties on load
    return save_model(
        module,
        tokenizer,
        dest,
        storage_options=cfg.data.storage_options,
        overwrite=True,  # within an unfinished run: the previous export is superseded
        state_dict=state_dict,
        metadata={
            "method": cfg.method.name,
            "base_model": cfg.model.path,
            "dataset": cfg.data.path,
        },
    )


def finish(
    cfg: RunConfig,
    module: Any,
    tokenizer: Any,
    state_dict: dict | None,
    history: list[dict],
    before: dict,
    after: dict,
    global_step: int,
    t_start: float,
    best: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Rank 0: write metrics.jsonl, the consolidated model, then run.json (last: it marks the run finished)."""
    opts = cfg.data.storage_options
    storage.write_bytes(
        run_dir.path(cfg, "metrics.jsonl"),
        "".join(json.dumps(h) + "\n" for h in history).encode(),
        opts,
    )
    digest = export_model(cfg, module, tokenizer, state_dict, run_dir.path(cfg, "model"))
    steps = [h for h in history if "step" in h]
    summary = {
        "status": "finished",
        "method": cfg.method.name,
        "steps": global_step,
        "epochs": cfg.train.epochs,
        "loss_before": before,
        "loss_after": after,
        "final_step": steps[-1] if steps else None,
        "model_dir": run_dir.path(cfg, "model"),
        "model_sha256": digest,
        "wall_time_s": time.time() - t_start,
        "backend": cfg.backend.kind,
        "zero_stage": cfg.backend.zero_stage if cfg.backend.kind == "deepspeed" else None,
        "num_workers": cfg.scaling.num_workers,
        # the best evaluated checkpoint (eval section set), exported to best_model/
        "best": best,
    }
    run_dir.write_json(run_dir.path(cfg, run_dir.RUN_FILE), summary, opts)
    return summary


def one_shot(
    cfg: RunConfig,
    session: Any,
    method: Any,
    model: Any,
    tokenizer: Any,
    streams: dict[str, list[Example]],
    pad_id: int,
    t_start: float,
) -> dict[str, Any]:
    """SSD and other one-shot methods: importance passes split across workers, then a weight edit."""
    device = session.device
    model.to(device)
    bs = cfg.train.micro_batch_size

    def batches(examples: list[Example]) -> list[dict[str, torch.Tensor]]:
        out = []
        for indices, real in shard(len(examples), session.rank, session.world_size, bs):
            rows = [examples[i] for i, ok in zip(indices, real) if ok]
            if rows:
                out.append({k: v.to(device) for k, v in collate(rows, pad_id).items()})
        return out

    def loss_fn(m: Any, b: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = m(
            input_ids=b["input_ids"], attention_mask=b["attention_mask"], use_cache=False
        ).logits
        return nll_loss(sequence_logprobs(logits, b["labels"]))

    full = streams["retain"] + [
        Example(len(streams["retain"]) + e.index, e.id, e.input_ids, e.labels)
        for e in streams["forget"]
    ]
    before = split_losses(model, streams, session, pad_id, bs * 2)
    stats = method.apply(model, batches(full), batches(streams["forget"]), loss_fn, all_reduce_sum)
    after = split_losses(model, streams, session, pad_id, bs * 2)
    history = [{"before": before}, {"step": 0, **stats}]
    summary = None
    if session.rank == 0:
        summary = finish(cfg, model, tokenizer, None, history, before, after, 0, t_start)
    barrier()
    return summary or {}
