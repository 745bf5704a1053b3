"""The model-running half of evaluation: batched teacher-forced scoring and batched generation.

Everything that calls the model lives here. Scoring right-pads (positions stay 0..n-1, so no
position ids are needed) and sorts items by length so a batch wastes little padding; generation
left-pads (the tiny tokenizers' side) so every prompt ends where decoding starts. Both can pad
their list of batches with dummy batches to a fixed count (``n_batches``): under DeepSpeed ZeRO-3
every forward pass gathers parameters collectively, so every rank must run the same number.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from unlearn.errors import DataError, ModelError
from unlearn.eval.metrics import (
    average_nll,
    exact_memorization,
    extraction_strength,
    token_stats,
)
from unlearn.models.batching import answer_positions, pad_right
from unlearn.models.prompting import encode_qa

# Rows of [tokens, vocab] log-softmax computed at once (bounds memory for large vocabularies).
TOKEN_CHUNK = 2048
# Fraction of unknown tokens in the dataset's text above which the tokenizer is refused.
MAX_UNK_FRACTION = 0.05


@dataclass
class ScoreItem:
    """One teacher-forced sequence: the prompt of ``question`` followed by ``answer``.

    ``full`` asks for the token-level statistics (extraction strength, exact memorization and
    the membership-inference scores of ``attacks``) besides the average NLL.
    """

    question: str
    answer: str
    full: bool = False


def model_device(model: Any) -> Any:
    """The device the model's parameters live on (CPU when it has none)."""
    import torch

    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def model_vocab_size(model: Any) -> int:
    """Rows of the input embedding (correct under ZeRO-3, where the weight itself is sharded)."""
    emb = model.get_input_embeddings()
    n = getattr(emb, "num_embeddings", None)
    return int(n if n is not None else model.config.vocab_size)


def check_vocabulary(model: Any, tokenizer: Any, encoded: Sequence[Sequence[int]]) -> None:
    """Refuse a tokenizer that does not fit the model or the dataset (clear ModelError / DataError).

    Token ids must index the model's embedding; the dataset's text must not be mostly unknown
    tokens (a tokenizer from another model or language).
    """
    vocab = model_vocab_size(model)
    top = max((max(ids) for ids in encoded if ids), default=-1)
    if top >= vocab:
        raise ModelError(
            f"the tokenizer produces token id {top} on this dataset but the model's vocabulary has "
            f"{vocab} entries (len(tokenizer) = {len(tokenizer)}): the tokenizer does not belong "
            "to this model; load both from the same model directory"
        )
    unk = getattr(tokenizer, "unk_token_id", None)
    if unk is not None:
        total = sum(len(ids) for ids in encoded)
        unknown = sum(
            ids.count(unk) if isinstance(ids, list) else list(ids).count(unk) for ids in encoded
        )
        if total and unknown / total > MAX_UNK_FRACTION:
            raise DataError(
                f"{unknown} of {total} tokens ({unknown / total:.0%}) of the dataset's text are the "
                f"unknown token {tokenizer.unk_token!r}: the model's tokenizer does not cover this "
                "dataset's vocabulary (was the model trained on another dataset?)"
            )


def _batches(order: list[int], batch_size: int, n_batches: int | None) -> list[list[int] | None]:
    """Index batches in ``order``; padded with ``None`` (dummy) batches up to ``n_batches``."""
    out: list[list[int] | None] = [
        order[i : i + batch_size] for i in range(0, len(order), batch_size)
    ]
    if n_batches is not None:
        if n_batches < len(out):
            raise ValueError(f"n_batches={n_batches} is less than the {len(out)} batches needed")
        out += [None] * (n_batches - len(out))
    return out


def n_batches(n_items: int, batch_size: int) -> int:
    """How many batches ``n_items`` make."""
    return math.ceil(n_items / batch_size)


def encode_items(tokenizer: Any, items: Sequence[ScoreItem], max_length: int) -> list[dict]:
    """Tokenize items with the shared prompt format (``unlearn.models.prompting.encode_qa``)."""
    return [encode_qa(tokenizer, it.question, it.answer, max_length) for it in items]


def score(
    model: Any,
    tokenizer: Any,
    items: Sequence[ScoreItem],
    *,
    batch_size: int,
    max_length: int,
    attacks: dict[str, Callable[..., float]] | None = None,
    min_k: float = 0.4,
    n_batches: int | None = None,
    dummy: ScoreItem | None = None,
    encoded: list[dict] | None = None,
) -> list[dict[str, Any]]:
    """Teacher-forced statistics of every item, in input order, batched.

    Per item: ``avg_nll`` (mean NLL over answer tokens, EOS included, as OU's probability) and
    ``n`` (answer tokens). For ``full`` items also ``es``, ``em`` and ``mia`` {attack: score},
    over the answer tokens without the final EOS (OU's token-wise convention). ``n_batches``
    pads with forward passes on ``dummy`` whose results are dropped.
    """
    import torch

    attacks = attacks or {}
    enc = encoded if encoded is not None else encode_items(tokenizer, items, max_length)
    order = sorted(range(len(enc)), key=lambda i: -len(enc[i]["input_ids"]))
    results: list[dict[str, Any] | None] = [None] * len(enc)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    eos_id = tokenizer.eos_token_id
    device = model_device(model)
    dummy_enc = None
    for batch in _batches(order, batch_size, n_batches):
        if batch is None:
            if dummy_enc is None:
                src = dummy or (items[0] if items else None)
                if src is None:
                    raise ValueError("padding batches need a dummy item")
                dummy_enc = encode_items(tokenizer, [src], max_length)
            rows, flags = dummy_enc, [False]
        else:
            rows, flags = [enc[i] for i in batch], [items[i].full for i in batch]
        padded = pad_right([r["input_ids"] for r in rows], [r["labels"] for r in rows], pad_id)
        with torch.no_grad():
            logits = model(
                input_ids=padded["input_ids"].to(device),
                attention_mask=padded["attention_mask"].to(device),
                use_cache=False,
            ).logits
        if batch is None:
            continue
        sel_logits, sel_targets, keep = answer_positions(logits, padded["labels"].to(logits.device))
        parts = [token_stats(sel_logits[s : s + TOKEN_CHUNK], sel_targets[s : s + TOKEN_CHUNK])
                 for s in range(0, sel_logits.shape[0], TOKEN_CHUNK)]  # fmt: skip
        lp, mu, sigma2, argmax = (torch.cat([p[k] for p in parts]).cpu() for k in range(4))
        counts = keep.sum(1).tolist()
        start = 0
        for j, i in enumerate(batch):
            n = counts[j]
            sl = slice(start, start + n)
            start += n
            if n == 0:
                raise DataError(f"item {i} has no answer tokens after truncation to {max_length}")
            tok_lp = lp[sl].tolist()
            out: dict[str, Any] = {"avg_nll": average_nll(tok_lp), "n": n}
            if flags[j]:
                labs = sel_targets[sl].cpu().tolist()
                preds = argmax[sl].tolist()
                m = n - 1 if (eos_id is not None and labs[-1] == eos_id and n > 1) else n
                out["es"] = extraction_strength(preds[:m], labs[:m])
                out["em"] = exact_memorization(preds[:m], labs[:m])
                text = tokenizer.decode(labs, skip_special_tokens=True)
                out["mia"] = {
                    name: fn(
                        avg_nll=out["avg_nll"],
                        text=text,
                        token_logprobs=tok_lp[:m],
                        mu=mu[sl][:m].tolist(),
                        sigma2=sigma2[sl][:m].tolist(),
                        k=min_k,
                    )
                    for name, fn in attacks.items()
                }
            results[i] = out
    return results  # type: ignore[return-value]


def gradient_norms(
    model: Any, encoded: Sequence[dict], p: float = 2.0, eos_id: int | None = None
) -> list[list[float]]:
    """Per item, the p-norm of each parameter tensor's gradient of its mean answer-token NLL.

    One forward and backward pass per item (the gradient-norm attack, ``metrics.mia_gradnorm``);
    the final EOS is left out of the NLL as in the other token-level attacks. Gradients are
    cleared before and after: never call this while a training step's gradients are pending.
    """
    import torch

    device = model_device(model)
    params = [q for q in model.parameters() if q.requires_grad]
    if not params:
        raise ModelError("the gradient-norm attack needs parameters that require gradients")
    out: list[list[float]] = []
    was_training = model.training
    model.eval()
    try:
        for enc in encoded:
            ids = torch.tensor([enc["input_ids"]], device=device)
            labels = torch.tensor([enc["labels"]], device=device)
            model.zero_grad(set_to_none=True)
            with torch.enable_grad():
                logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
                sel, targets, _ = answer_positions(logits, labels)
                if eos_id is not None and targets.numel() > 1 and int(targets[-1]) == eos_id:
                    sel, targets = sel[:-1], targets[:-1]
                lp = torch.log_softmax(sel.float(), dim=-1).gather(-1, targets.unsqueeze(-1))
                (-lp.mean()).backward()
            out.append(
                [float(q.grad.detach().float().norm(p=p)) for q in params if q.grad is not None]
            )
        model.zero_grad(set_to_none=True)
    finally:
        model.train(was_training)
    return out


def greedy_config(model: Any, tokenizer: Any, max_new_tokens: int) -> Any:
    """The model's generation config switched to greedy decoding of ``max_new_tokens``."""
    from transformers import GenerationConfig

    cfg = copy.deepcopy(getattr(model, "generation_config", None) or GenerationConfig())
    cfg.do_sample = False
    cfg.num_beams = 1
    cfg.temperature = None
    cfg.top_p = None
    cfg.top_k = None
    cfg.max_new_tokens = max_new_tokens
    cfg.max_length = None
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    cfg.pad_token_id = pad
    if cfg.eos_token_id is None:
        cfg.eos_token_id = tokenizer.eos_token_id
    return cfg


def generate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[Sequence[int]],
    *,
    batch_size: int,
    max_new_tokens: int,
    synced: bool = False,
    n_batches: int | None = None,
    dummy: Sequence[int] | None = None,
) -> list[str]:
    """Greedy continuations of token-id ``prompts``, in input order, batched with left padding.

    Decoded without special tokens and stripped. ``synced`` passes ``synced_gpus=True`` (ZeRO-3:
    ranks keep stepping until all are done); ``n_batches`` pads with generate calls on ``dummy``.
    """
    import torch

    config = greedy_config(model, tokenizer, max_new_tokens)
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    texts: list[str] = [""] * len(prompts)
    device = model_device(model)
    for batch in _batches(order, batch_size, n_batches):
        if batch is None:
            src = dummy if dummy is not None else (prompts[0] if prompts else None)
            if src is None:
                raise ValueError("padding generate calls need a dummy prompt")
            rows = [list(src)]
        else:
            rows = [list(prompts[i]) for i in batch]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), config.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for j, r in enumerate(rows):
            ids[j, width - len(r) :] = torch.tensor(r)
            mask[j, width - len(r) :] = 1
        with torch.no_grad():
            out = model.generate(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                generation_config=config,
                synced_gpus=synced,
            )
        if batch is None:
            continue
        decoded = tokenizer.batch_decode(out[:, width:].cpu(), skip_special_tokens=True)
        for i, text in zip(batch, decoded):
            texts[i] = text.strip()
    return texts
