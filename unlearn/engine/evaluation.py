"""Evaluation inside training: every N epochs, on all workers, with best-checkpoint selection.

Each rank evaluates its shard of every split (``unlearn.eval.evaluate_shard``); the shards are
gathered to every rank and merged there (merging is cheap and deterministic, so every rank reaches
the same score and the same best-checkpoint decision without another broadcast). Under ZeRO-3 the
passes are ``synced``: every rank runs the same number of forward / generate steps.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from unlearn.data import Dataset
from unlearn.engine import run_dir
from unlearn.engine.config import RunConfig
from unlearn.engine.distributed import all_gather_objects, barrier
from unlearn.errors import ConfigError
from unlearn.eval import (
    EvalConfig,
    cached_reference,
    evaluate_shard,
    flat_numbers,
    merge_shards,
    reference_from_shards,
    reference_key,
)
from unlearn.eval.metrics import MIA_ATTACKS
from unlearn.eval.plan import plan_splits, retain_fallback
from unlearn.methods import Method, build_method
from unlearn.models import files_hash, load_model, model_hash

# The summary numbers of the per-epoch record; the record also holds every split metric and MIA
# AUC under ``unlearn.eval.flat_numbers`` names (``forget.rouge_l_recall``, ``mia.min_k``, ...).
HEADLINE = ("forget_quality", "model_utility", "privleak", "score")


def eval_config(cfg: RunConfig, method: Method, dataset: Dataset | None = None) -> EvalConfig:
    """The run's eval section, pointed at the run's forget split when it unlearns.

    Every other split is picked exactly as ``unlearn eval`` picks it (``plan.resolve_splits``):
    TOFU's ``retain_perturbed`` when the dataset has it, else the forget split's recorded pair;
    the run's ``data.retain_split`` only when the dataset offers neither.
    """
    if cfg.eval is None:
        raise ValueError("the run has no eval section")
    gradient = [a for a in cfg.eval.mia_attacks if MIA_ATTACKS[a].computed == "gradient"]
    if gradient or MIA_ATTACKS[cfg.eval.privleak_attack].computed == "gradient":
        raise ConfigError(
            f"eval.mia_attacks: {(gradient or [cfg.eval.privleak_attack])[0]!r} runs a backward "
            "pass per example, which would mix into training's gradients; evaluate it after "
            "training with `unlearn eval`"
        )
    changes: dict[str, Any] = {}
    if any(st.split == "forget" for st in method.streams):
        changes["forget_split"] = cfg.data.forget_split
        ds = dataset or Dataset(cfg.data.path, cfg.data.storage_options)
        own = retain_fallback(ds, cfg.eval, cfg.data.forget_split, cfg.data.retain_split)
        if own is not None:
            changes["retain_split"] = own
    # each rank loads the retain model whole to read the answers: not under ZeRO-3
    zero3 = cfg.backend.kind == "deepspeed" and cfg.backend.zero_stage == 3
    new = dataclasses.replace(cfg.eval, **changes).with_fluency_model(
        None if zero3 else cfg.model.retain_model, cfg.model.storage_options, cfg.model.dtype
    )
    new.check()
    return new


def check_eval_plan(cfg: RunConfig, dataset: Dataset) -> None:
    """Plan the run's in-training evaluation on ``dataset`` before anything trains: every split
    it will read must exist and hold the columns its metrics need (a ``DataError`` naming the
    split and the column otherwise). A run without an eval section passes."""
    if cfg.eval is None:
        return
    plan_splits(dataset, eval_config(cfg, build_method(cfg.method), dataset))


class EpochEvaluator:
    """Evaluates the training model on every rank's shard and merges the result."""

    def __init__(
        self,
        cfg: RunConfig,
        method: Method,
        dataset: Dataset,
        tokenizer: Any,
        session: Any,
        synced: bool,
    ):
        self.cfg = cfg
        self.eval_cfg = eval_config(cfg, method, dataset)
        self.dataset = dataset
        self.tokenizer = tokenizer
        self.session = session
        self.synced = synced
        self.reference: dict[str, Any] | None = None

    def prepare_reference(self) -> None:
        """The retain-only model's forget truth ratios and MIA AUCs: cached in the run dir, else
        computed across the workers (a plain model on each: no collectives inside). The fluency
        reference model and gibberish classifier are loaded here on every rank, so one that
        cannot be read fails before training, on all ranks alike."""
        from unlearn.eval import fluency

        ecfg = self.eval_cfg
        if ecfg.generation and ecfg.fluency_path is not None:
            fluency.reference_model(
                ecfg.fluency_path, ecfg.fluency_storage_options, ecfg.fluency_dtype,
                self.session.device,
            )  # fmt: skip
        if ecfg.generation and ecfg.gibberish_classifier:
            fluency.gibberish_probability(["."], ecfg.gibberish_classifier)
        retain = self.cfg.model.retain_model
        if retain is None:
            return
        opts = self.cfg.model.storage_options
        digest = model_hash(retain, opts)

        def compute() -> dict[str, Any]:
            model, _ = load_model(
                retain, dtype=self.cfg.model.dtype, storage_options=opts, with_tokenizer=False
            )
            model.to(self.session.device).eval()
            shard = evaluate_shard(
                model,
                self.tokenizer,
                self.dataset,
                self.eval_cfg,
                self.session.rank,
                self.session.world_size,
                purpose="reference",
            )
            del model
            return reference_from_shards(
                all_gather_objects(shard), self.eval_cfg, model_hash=digest
            )

        # the retain model's numbers depend on its weights and config and on this run's tokenizer
        files = f"{files_hash(retain, opts)}:{files_hash(self.cfg.model.path, opts)}"
        self.reference = cached_reference(
            reference_key(self.dataset, self.eval_cfg, digest, files),
            compute,
            cache_dir=run_dir.path(self.cfg, "eval_cache"),
            storage_options=self.cfg.output.storage_options,
            write=self.session.rank == 0,
        )
        barrier()

    def __call__(self, module: Any) -> dict[str, Any]:
        """The merged metrics of the current weights (same dict on every rank)."""
        was_training = module.training
        module.eval()
        shard = evaluate_shard(
            module,
            self.tokenizer,
            self.dataset,
            self.eval_cfg,
            self.session.rank,
            self.session.world_size,
            synced=self.synced,
        )
        if was_training:
            module.train()
        return merge_shards(all_gather_objects(shard), self.eval_cfg, self.reference)


def headline(metrics: dict[str, Any]) -> dict[str, Any]:
    """The per-epoch numbers kept in history and in the session's per-epoch report: the summary
    numbers, then every split metric and MIA AUC (``unlearn.eval.flat_numbers``)."""
    return flat_numbers(metrics)
