"""Tiny Llama-architecture models built from a config, with a BPE tokenizer trained locally.

Nothing is downloaded: the tokenizer is trained on the dataset's own text with the ``tokenizers``
library and the weights are randomly initialized, so tests and the demo run offline. The result
is saved in Hugging Face layout and loads with ``AutoModelForCausalLM`` / ``AutoTokenizer``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from unlearn.errors import ConfigError
from unlearn.models.prompting import QA_TEMPLATE, TINY_CHAT_TEMPLATE

# name -> (hidden, layers, heads, intermediate). "nano" keeps unit tests fast; "tiny" is the demo's.
SIZES: dict[str, tuple[int, int, int, int]] = {
    "nano": (64, 2, 4, 128),
    "micro": (128, 2, 4, 384),
    "tiny": (192, 4, 4, 512),
    "small": (384, 6, 6, 1024),
}
SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>"]
# byte-level BPE starts from the 256 byte symbols plus the special tokens
MIN_VOCAB = 256 + len(SPECIAL_TOKENS)
MIN_POSITIONS = 8  # a prompt and an answer need at least this many positions
MAX_SEED = 2**63 - 1


def train_tokenizer(texts: Iterable[str], vocab_size: int = 2048) -> Any:
    """Train a byte-level BPE tokenizer on ``texts``; returns a ``PreTrainedTokenizerFast``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if isinstance(vocab_size, bool) or not MIN_VOCAB <= vocab_size <= 1_000_000:
        raise ConfigError(
            f"vocab size must be between {MIN_VOCAB} (the 256 byte symbols and "
            f"{len(SPECIAL_TOKENS)} special tokens) and 1000000, got {vocab_size}"
        )
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
    )
    fast.chat_template = TINY_CHAT_TEMPLATE
    fast.padding_side = "left"  # batched generation pads on the left
    return fast


def dataset_texts(records: Iterable[dict[str, Any]]) -> list[str]:
    """Every text a model will see from these rows, each row once (by id): prompts, answers,
    paraphrases, perturbations.

    Rows appear in several splits (forget10 is also in full and forget05 ...); counting them once
    keeps BPE from merging some entities' names more than others', which would make their text
    likelier per token and bias membership inference.
    """
    texts = []
    seen: set[str] = set()
    for r in records:
        if r["id"] in seen:
            continue
        seen.add(r["id"])
        texts.append(QA_TEMPLATE.format(question=r["question"]) + " " + r["answer"])
        for key in ("paraphrased_answer", "paraphrased_question"):
            if r.get(key):
                texts.append(r[key])
        texts.extend(r.get("perturbed_answers") or [])
    return texts


def build_tiny_model(
    tokenizer: Any, size: str = "tiny", max_positions: int = 256, seed: int = 0
) -> Any:
    """A randomly initialized ``LlamaForCausalLM`` of a named size, matched to ``tokenizer``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    if size not in SIZES:
        raise ConfigError(f"model size {size!r} is unknown (known: {', '.join(SIZES)})")
    if not MIN_POSITIONS <= max_positions <= 1_048_576:
        raise ConfigError(
            f"max positions must be between {MIN_POSITIONS} (a prompt and an answer) and "
            f"1048576, got {max_positions}"
        )
    if not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"seed must be between 0 and {MAX_SEED}, got {seed}")
    hidden, layers, heads, inter = SIZES[size]
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        intermediate_size=inter,
        max_position_embeddings=max_positions,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model
