"""The one place where questions and answers become token sequences.

Training, evaluation and serving all format a QA pair with ``format_prompt`` and tokenize it with
``encode_qa``: the prompt's tokens are masked out of the labels (``IGNORE_INDEX``), so losses and
metrics are computed on answer tokens only, identically everywhere.
"""

from __future__ import annotations

from typing import Any

IGNORE_INDEX = -100
# Plain QA template for models without a chat template (our tiny models, base checkpoints).
QA_TEMPLATE = "Question: {question}\nAnswer:"
# Jinja chat template saved with tiny tokenizers, so serving can use apply_chat_template.
TINY_CHAT_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'user' %}Question: {{ m['content'] }}\nAnswer:"
    "{% elif m['role'] == 'assistant' %} {{ m['content'] }}{{ eos_token }}\n"
    "{% else %}{{ m['content'] }}\n{% endif %}"
    "{% endfor %}"
)


def format_prompt(question: str, tokenizer: Any = None, system: str | None = None) -> str:
    """The prompt text for ``question``: the tokenizer's chat template if it has one, else QA_TEMPLATE."""
    template = getattr(tokenizer, "chat_template", None)
    if template and template != TINY_CHAT_TEMPLATE:
        messages = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": question}
        ]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    prefix = f"{system}\n" if system else ""
    return prefix + QA_TEMPLATE.format(question=question)


def format_answer(answer: str) -> str:
    """The answer text as it follows the prompt (a leading space, as in generation)."""
    return " " + answer.strip()


def encode_qa(
    tokenizer: Any, question: str, answer: str, max_length: int = 256
) -> dict[str, list[int]]:
    """Token ids and labels for one QA pair; prompt tokens are labelled IGNORE_INDEX.

    The prompt and answer are tokenized separately and concatenated, so the boundary is exact
    whatever the tokenizer merges. The answer ends with EOS. Sequences longer than ``max_length``
    are cut from the end of the answer (the prompt is kept whole).
    """
    prompt_ids = tokenizer(format_prompt(question, tokenizer), add_special_tokens=False)[
        "input_ids"
    ]
    if tokenizer.bos_token_id is not None:
        prompt_ids = [tokenizer.bos_token_id, *prompt_ids]
    answer_ids = tokenizer(format_answer(answer), add_special_tokens=False)["input_ids"]
    if tokenizer.eos_token_id is not None:
        answer_ids = [*answer_ids, tokenizer.eos_token_id]
    room = max_length - len(prompt_ids)
    if room < 1:
        raise ValueError(
            f"prompt of {len(prompt_ids)} tokens leaves no room for the answer (max_length={max_length})"
        )
    answer_ids = answer_ids[:room]
    return {
        "input_ids": prompt_ids + answer_ids,
        "labels": [IGNORE_INDEX] * len(prompt_ids) + answer_ids,
    }


def encode_prompt(tokenizer: Any, question: str) -> list[int]:
    """Token ids of the prompt alone (what generation starts from), BOS included."""
    ids = tokenizer(format_prompt(question, tokenizer), add_special_tokens=False)["input_ids"]
    return [tokenizer.bos_token_id, *ids] if tokenizer.bos_token_id is not None else ids
