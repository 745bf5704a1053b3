"""Everything a run reads, checked in the submitting process before any work starts.

``check_run(cfg)`` opens the dataset (every split it reads is re-hashed and checked against
dataset.json, its columns and row counts validated), checks forget / retain entity overlap, the
model directory (config, safetensors headers against the architecture, tokenizer and vocabulary,
manifest against the weights) and the retain model, the method against the model (a meta-device
skeleton: no weights loaded), and the evaluation section's splits and columns. It returns the
run's input record (``data_hashes.json``): the dataset and split content hashes and the weights
hashes, all computed from the bytes.
"""

from __future__ import annotations

from typing import Any

from unlearn.data import Dataset
from unlearn.engine.config import RunConfig
from unlearn.engine.loop import data_hashes, retain_split_name
from unlearn.errors import ModelError, UnlearnError
from unlearn.methods import build_method
from unlearn.models import ModelInfo, check_model


def _check_method_on(method: Any, info: ModelInfo) -> None:
    """Let the method see the model's architecture (a meta-device skeleton, no weights) so that
    it can refuse it now (RMU: a layer the model lacks)."""
    import torch
    from transformers import AutoModelForCausalLM

    try:
        with torch.device("meta"):
            skeleton = AutoModelForCausalLM.from_config(info.config)
    except Exception:  # check_model built this already; the workers load the real model
        return
    try:
        method.prepare_model(skeleton)
    except UnlearnError:
        raise
    except Exception:  # a method that cannot prepare a weightless model is checked by the workers
        return


def check_run(cfg: RunConfig) -> dict[str, Any]:
    """Check a run's dataset, models, method and evaluation section; return its input record."""
    method = build_method(cfg.method)
    dataset = Dataset(cfg.data.path, cfg.data.storage_options)
    inputs = data_hashes(cfg, dataset, method)  # reads every split a stream needs, re-hashed
    splits = {st.split for st in method.streams}
    if {"forget", "retain"} <= splits:
        dataset.pair(cfg.data.forget_split, retain_split_name(cfg, dataset))
    opts = cfg.model.storage_options
    model = check_model(cfg.model.path, opts)
    inputs["model"] = model.hash
    if method.hidden_layers and model.num_layers is not None:
        bad = [layer for layer in method.hidden_layers if layer >= model.num_layers]
        if bad:
            raise ModelError(
                f"method {cfg.method.name!r} reads decoder layer {bad[0]} but {cfg.model.path} "
                f"has {model.num_layers} layers (0..{model.num_layers - 1})"
            )
    _check_method_on(method, model)
    if cfg.eval is not None:
        from unlearn.engine.evaluation import eval_config
        from unlearn.eval.plan import plan_splits

        ecfg = eval_config(cfg, method)
        plan_splits(dataset, ecfg)  # split names, roles and the columns the metrics need
        if cfg.model.retain_model is not None:
            plan_splits(dataset, ecfg, purpose="reference")
            retain = check_model(cfg.model.retain_model, opts, tokenizer=False)
            if model.tokenizer_size is not None and model.tokenizer_size > retain.vocab_size:
                raise ModelError(
                    f"model.retain_model {cfg.model.retain_model}: its embedding has "
                    f"{retain.vocab_size} rows but the run's tokenizer has "
                    f"{model.tokenizer_size} tokens; the retain model must share the "
                    "model's tokenizer"
                )
            inputs["retain_model"] = retain.hash
    return inputs
