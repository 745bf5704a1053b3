"""The training recipe every worker runs: setup -> reference cache -> loop -> checkpoint -> export.

Read top to bottom. The loop knows no method by name: a method declares its streams, what it needs
from the engine (cached or online reference, hidden layers, model preparation, one-shot editing)
and its loss (``unlearn.methods.Method``). A ``Session`` (unlearn.engine.session) says which rank
this is, where the latest checkpoint is, and how to report: the cluster shell runs ``train`` in
its training workers; the GPU benchmark and the tests run it in a single process.
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
from unlearn.engine import memory, modeling, reference, run_dir
from unlearn.engine.backend import deepspeed_config, make_backend
from unlearn.engine.config import RunConfig
from unlearn.engine.context import Context
from unlearn.engine.data import Example, Schedule, collate, shard, tokenize
from unlearn.engine.distributed import all_gather_objects, all_reduce_sum, barrier
from unlearn.engine.evaluation import EpochEvaluator, headline
from unlearn.errors import DataError
from unlearn.methods import Method, Stream, build_method
from unlearn.methods.common import nll_loss
from unlearn.models import save_model
from unlearn.models.batching import sequence_logprobs


def data_splits(cfg: RunConfig, dataset: Dataset, stream: Stream) -> list[str]:
    """The configured splits that feed a stream."""
    if stream.split == "train":
        return list(cfg.data.train_splits)
    if stream.split == "forget":
        return [cfg.data.forget_split]
    name = retain_split_name(cfg, dataset)
    if name is None:
        raise DataError(
            f"method {cfg.method.name!r} needs a retain split: set data.retain_split (dataset "
            f"{cfg.data.path} records no pair for {cfg.data.forget_split!r})"
        )
    return [name]


def data_hashes(cfg: RunConfig, dataset: Dataset, method: Method | None = None) -> dict[str, Any]:
    """The dataset version and the content hash of every split a run reads."""
    method = method or build_method(cfg.method)
    splits = [s for st in method.streams for s in data_splits(cfg, dataset, st)]
    return {"dataset": dataset.hash, "splits": {s: dataset.split_hash(s) for s in splits}}


def retain_split_name(cfg: RunConfig, dataset: Dataset) -> str | None:
    """The retain split: configured, else the forget split's pair in dataset.json."""
    return cfg.data.retain_split or dataset.paired_split(cfg.data.forget_split, "retain")


def build_streams(
    cfg: RunConfig, streams: tuple[Stream, ...], dataset: Dataset, tokenizer: Any
) -> dict[str, list[Example]]:
    """Tokenized examples of every stream a method declares (rows transformed as it says)."""
    splits = {st.name: data_splits(cfg, dataset, st) for st in streams}
    if {"forget", "retain"} <= {st.split for st in streams}:
        # forget and retain must share no entity
        dataset.pair(cfg.data.forget_split, retain_split_name(cfg, dataset))
    out = {}
    for st in streams:
        records = [r for split in splits[st.name] for r in dataset.records(split)]
        if st.transform is not None:
            records = [st.transform(r) for r in records]
        out[st.name] = tokenize(tokenizer, records, cfg.data.max_length)
    return out


def split_losses(
    forward: Any,
    streams: dict[str, list[Example]],
    method: Method,
    session: Any,
    pad_id: int,
    batch_size: int,
) -> dict[str, float]:
    """Mean answer NLL of each untransformed stream (``forget_nll``, ``retain_nll``, ``train_nll``),
    teacher-forced over the whole stream, split across all workers."""
    out = {}
    for st in method.streams:
        if st.transform is None:
            stats = reference.stream_logprobs(
                forward,
                streams[st.name],
                batch_size=batch_size,
                rank=session.rank,
                world_size=session.world_size,
                pad_id=pad_id,
                device=session.device,
            )
            out[f"{st.name}_nll"] = reference.mean_nll(stats)
    return out


def token_normalizers(
    method: Method, step_rows: list[dict[str, list[Example]]], session: Any
) -> dict[str, float]:
    """Per stream: the step's tokens (``method.token_count``) over every micro-batch of every
    worker, divided by the micro-batches the gradient averages (workers x accumulation): one
    small all-reduce per step, which keeps token-mean losses exact on every backend."""
    names = [st.name for st in method.streams]
    local = [
        float(sum(method.token_count(n, ex.labels) for rows in step_rows for ex in rows[n]))
        for n in names
    ]
    total = all_reduce_sum(torch.tensor(local, dtype=torch.float64, device=session.device))
    micro = len(step_rows) * session.world_size
    return {n: max(float(total[i]), 1.0) / micro for i, n in enumerate(names)}


def train(cfg: RunConfig, session: Any) -> dict[str, Any]:
    """Run one fine-tuning or unlearning job on this worker; returns the run summary (rank 0)."""
    t_start = time.time()
    torch.manual_seed(cfg.train.seed)
    out_opts = cfg.output.storage_options
    dataset = Dataset(cfg.data.path, cfg.data.storage_options)
    method = build_method(cfg.method)
    # ZeRO-3: built partitioned, each rank reading only its partition (engine/modeling.py)
    ds_config = deepspeed_config(cfg) if cfg.backend.kind == "deepspeed" else None
    source = modeling.ModelSource(cfg)  # local copy, config, tokenizer: everything but weights
    tokenizer = source.tokenizer
    probe = memory.Probe(session.device)  # memory from here on: the weights and training
    model = source.build(ds_config, partitioned=modeling.is_zero3(cfg) and not method.one_shot)
    load_memory = probe.sample(model)
    method.prepare_model(model)
    if not method.one_shot:
        model = modeling.adapt(model, cfg)  # gradient checkpointing, LoRA adapters
    streams = build_streams(cfg, method.streams, dataset, tokenizer)
    pad_id = tokenizer.pad_token_id
    device = session.device

    # One-shot methods edit the weights directly: no optimizer, no loop.
    if method.one_shot:
        return one_shot(cfg, session, method, model, tokenizer, streams, pad_id, t_start)

    primary = [st.name for st in method.streams if st.primary]
    retained = [st.name for st in method.streams if not st.primary]
    schedule = Schedule(
        primary_size=len(streams[primary[0]]),
        retain_size=len(streams[retained[0]]) if retained else 0,
        batch_size=cfg.train.batch_size,
        micro_batch_size=cfg.train.micro_batch_size,
        world_size=session.world_size,
        seed=cfg.train.seed,
    )
    total_steps = schedule.steps_per_epoch * cfg.train.epochs
    warmup_steps = math.floor(cfg.train.warmup_epochs * schedule.steps_per_epoch)
    backend = make_backend(model, cfg, total_steps, warmup_steps, device, session.world_size)
    reference_model = None
    if method.needs_reference_model:  # LoRA: the same model with adapters disabled
        reference_model = modeling.reference_model(cfg, backend, device, ds_config)
    eval_batch = cfg.train.micro_batch_size * 2

    # Resume: weights, optimizer and schedule from the latest checkpoint; step counter continues.
    start_epoch, global_step, history = 0, 0, []
    method_state = None
    with session.latest_checkpoint() as ckpt:
        if ckpt is not None:
            backend.load(Path(ckpt))
            state = json.loads((Path(ckpt) / "trainer_state.json").read_text())
            start_epoch, global_step = state["epoch"] + 1, state["global_step"]
            method_state = state.get("method")
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
        meta = reference.cache_meta(  # keyed by the weights' and the tokenized streams' hashes
            run_dir.input_model_hash(cfg),
            cfg.model.dtype,
            {s: streams[s] for s in method.cached_reference},
        )
        loaded = reference.load_cache(cache_path, meta, out_opts)
        if loaded is None:
            if start_epoch > 0:
                raise DataError(
                    f"{cache_path} is missing, damaged or made for other inputs but the run is resuming at epoch {start_epoch}: the reference cannot be recomputed from trained weights; start over with --overwrite"
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
                reference.save_cache(cache_path, ref_cache, meta, out_opts)
            barrier()
        else:
            ref_cache = loaded

    before = (
        history[0]["before"]
        if history and "before" in history[0]
        else split_losses(backend.forward, streams, method, session, pad_id, eval_batch)
    )
    if not history:
        history.append({"before": before})
    method.start(before)
    if method_state is not None:
        method.load_state_dict(method_state)
    evaluator = None
    if cfg.eval is not None:
        synced = cfg.backend.kind == "deepspeed" and cfg.backend.zero_stage == 3
        evaluator = EpochEvaluator(cfg, method, dataset, tokenizer, session, synced)
        evaluator.prepare_reference()
    best = next((h["best"] for h in reversed(history) if "best" in h), None)
    if best is not None and evaluator is not None:
        if best.get("score_formula") != evaluator.eval_cfg.score:
            best = None  # the score changed meaning (eval.score): compare afresh from here
    # a run that train.stop_at stopped stays stopped, unless resumed with stop_at: none
    stopped = next((h["stopped"] for h in history if "stopped" in h), None)
    if stopped is not None and cfg.train.stop_at == "none":
        stopped = None

    backend.model.train()
    for epoch in range(start_epoch, cfg.train.epochs):
        if stopped is not None:
            break  # resumed after train.stop_at stopped the run: nothing more to train
        for step_in_epoch, micro_batches in enumerate(schedule.epoch(epoch, session.rank)):
            t0 = time.time()
            terms: dict[str, float] = {}
            tokens = 0
            step_rows = [
                {
                    st.name: [
                        streams[st.name][i] for i in mb["primary" if st.primary else "retain"]
                    ]
                    for st in method.streams
                }
                for mb in micro_batches
            ]
            normalizers = token_normalizers(method, step_rows, session)
            for rows in step_rows:
                ctx = Context.from_streams(
                    backend.forward,
                    rows,
                    pad_id,
                    device,
                    hidden_layers=method.hidden_layers,
                    reference_model=reference_model,
                    reference_cache=ref_cache,
                    token_normalizers=normalizers,
                )
                out = method.compute(ctx)
                backend.backward(out.loss)
                tokens += int(ctx.batch["attention_mask"].sum())
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
            method.end_step(record, step_in_epoch + 1 == schedule.steps_per_epoch)
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
                    "score_formula": evaluator.eval_cfg.score,  # eval.score: checked on resume
                    "model_dir": run_dir.path(cfg, "best_model"),
                }
                # every rank: ZeRO-3 gathers one parameter at a time while rank 0 writes
                modeling.export(cfg, backend.module, tokenizer, best["model_dir"], session.rank)
                record["best"] = best
            why = stop_reason(cfg.train, numbers)
            if why is not None and not last_epoch:
                stopped = {"epoch": epoch, "step": global_step, "reason": why}
                record["stopped"] = stopped
            history.append(record)
            barrier()
        if (epoch + 1) % cfg.output.checkpoint_every == 0 or last_epoch or stopped is not None:
            save_checkpoint(backend, session, epoch, global_step, history, method.state_dict())

    after = split_losses(backend.forward, streams, method, session, pad_id, eval_batch)
    # every rank: ZeRO-3 gathers one parameter at a time while rank 0 writes
    digest = modeling.export(
        cfg, backend.module, tokenizer, run_dir.path(cfg, "model"), session.rank
    )
    ranks = all_gather_objects({"load": load_memory, "run": probe.sample(backend.module)})
    summary = None
    if session.rank == 0:
        summary = finish(
            cfg,
            backend.module,
            tokenizer,
            None,
            history,
            before,
            after,
            global_step,
            t_start,
            best,
            model_digest=digest,
            memory={"ranks": ranks},
            stopped=stopped,
        )

    barrier()
    return summary or {}


def stop_reason(train: Any, numbers: dict[str, Any]) -> str | None:
    """Why ``train.stop_at`` stops after this evaluation (the same on every rank), or None."""
    if train.stop_at != "retain_equivalent":
        return None
    pl, fq = numbers.get("privleak"), numbers.get("forget_quality")
    if pl is not None:
        # one-sided on purpose: a run that jumped past the band (over-unlearned) stops too
        if pl >= -train.stop_tolerance:
            where = "retain-like" if pl <= train.stop_tolerance else "past it: over-unlearned"
            return (
                f"retain_equivalent: privleak {pl:.1f} reached -{train.stop_tolerance:g} or above "
                f"({where})"
            )
        return None
    if fq is not None and fq >= 0.05:
        return f"retain_equivalent: forget quality {fq:.3g} >= 0.05 (privleak not computed)"
    return None


def save_checkpoint(
    backend: Any,
    session: Any,
    epoch: int,
    global_step: int,
    history: list[dict],
    method_state: dict[str, Any] | None = None,
) -> None:
    """Every rank writes its part into a fresh local directory and reports it with the metrics."""
    tmp = Path(tempfile.mkdtemp(prefix="unlearn-ckpt-"))
    try:
        backend.save(tmp, session.rank)
        if session.rank == 0:
            state = {"epoch": epoch, "global_step": global_step, "method": method_state or {}}
            (tmp / "trainer_state.json").write_text(json.dumps(state))
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
        storage_options=cfg.output.storage_options,
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
    model_digest: str | None = None,
    memory: dict[str, Any] | None = None,
    stopped: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Rank 0: write metrics.jsonl, the consolidated model (unless ``model_digest`` says it is
    written), then run.json (last: it marks the run finished; ``stopped``: train.stop_at's
    record when it ended training early)."""
    opts = cfg.output.storage_options
    storage.write_bytes(
        run_dir.path(cfg, "metrics.jsonl"),
        "".join(json.dumps(h) + "\n" for h in history).encode(),
        opts,
    )
    digest = model_digest or export_model(
        cfg, module, tokenizer, state_dict, run_dir.path(cfg, "model")
    )
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
        # train.stop_at: where and why training stopped before its last epoch (else null)
        "stopped": stopped,
        # per rank: peak resident memory above the pre-load baseline while the model was built
        # ("load") and over the whole run ("run"), and the parameter bytes the rank held
        "memory": memory,
    }
    run_dir.write_json(run_dir.path(cfg, run_dir.RUN_FILE), summary, opts)
    return summary


class OneShot:
    """The ``OneShotContext`` a one-shot method sees: this rank's batches of each stream."""

    def __init__(
        self,
        model: torch.nn.Module,
        streams: dict[str, list[Example]],
        session: Any,
        pad_id: int,
        batch_size: int,
    ):
        self.model = model
        self.streams = streams
        self.session = session
        self.pad_id = pad_id
        self.batch_size = batch_size

    def batches(self, stream: str) -> list[dict[str, torch.Tensor]]:
        """This rank's share of a stream, collated on the session's device (padding rows dropped)."""
        examples, out = self.streams[stream], []
        s = self.session
        for indices, real in shard(len(examples), s.rank, s.world_size, self.batch_size):
            rows = [examples[i] for i, ok in zip(indices, real) if ok]
            if rows:
                out.append({k: v.to(s.device) for k, v in collate(rows, self.pad_id).items()})
        return out

    def nll(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The shared answer-token NLL of ``model`` on a batch."""
        logits = model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False
        ).logits
        return nll_loss(sequence_logprobs(logits, batch["labels"]))

    def all_reduce(self, t: torch.Tensor) -> torch.Tensor:
        """Sum over ranks."""
        return all_reduce_sum(t)


def one_shot(
    cfg: RunConfig,
    session: Any,
    method: Method,
    model: Any,
    tokenizer: Any,
    streams: dict[str, list[Example]],
    pad_id: int,
    t_start: float,
) -> dict[str, Any]:
    """One-shot methods: ``method.apply`` edits the weights (work split across workers), then the
    same summary and export as a trained run."""
    model.to(session.device)
    bs = cfg.train.micro_batch_size
    before = split_losses(model, streams, method, session, pad_id, bs * 2)
    stats = method.apply(OneShot(model, streams, session, pad_id, bs))
    after = split_losses(model, streams, method, session, pad_id, bs * 2)
    history = [{"before": before}, {"step": 0, **stats}]
    summary = None
    if session.rank == 0:
        summary = finish(cfg, model, tokenizer, None, history, before, after, 0, t_start)
    barrier()
    return summary or {}
