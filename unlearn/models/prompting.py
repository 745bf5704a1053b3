"""The one place where questions and answers become token sequences.

Training, evaluation and serving all format a QA pair with ``format_prompt`` and tokenize it with
``encode_qa``: the prompt's tokens are masked out of the labels (``IGNORE_INDEX``), so losses and
metrics are computed on answer tokens only, identically everywhere.

How a prompt is built depends on the model family (``PromptFormat``, detected from the
tokenizer's chat template, ``prompt_format``): the plain ``QA_TEMPLATE`` for models without a chat
template (tiny models, base checkpoints such as Llama-2-7b), else the model's own chat template
with the family's system prompt and date string (open-unlearning's model configs: Llama-3.x
"You are a helpful assistant." and date "10 Apr 2025"; Qwen2.5 the same system prompt;
Llama-2-chat none). Templates that emit BOS themselves (Llama-2/3) get no second one, so an
encoded prompt has exactly one BOS. A model directory can set any field in its
``tokenizer_config.json`` under ``"unlearn_prompt"`` (e.g. ``{"system_prompt": null}``).

Rows with an empty question are plain text (a passage: MUSE's corpora): BOS then the text, no
template and no EOS, as a pretraining corpus is read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields, replace
from typing import Any

from unlearn.errors import ModelError

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


@dataclass(frozen=True)
class PromptFormat:
    """A model family's prompt settings.

    ``template_emits_bos`` / ``answer_prefix`` None: derived from the chat template by rendering a
    probe conversation (does the rendered prompt begin with BOS; what comes between the
    generation prompt and the assistant's text).
    """

    family: str
    system_prompt: str | None = None
    date_string: str | None = None  # passed to the chat template (Llama-3.x "Today Date")
    template_emits_bos: bool | None = None
    answer_prefix: str | None = None


# The families and their settings (open-unlearning's configs/model/*.yaml).
FAMILIES: dict[str, PromptFormat] = {
    # no chat template (or the tiny models' QA template): "Question: ...\nAnswer:" + " answer"
    "plain": PromptFormat("plain", template_emits_bos=False, answer_prefix=" "),
    # Llama-3.x Instruct: the template writes <|begin_of_text|> and a system header with the date
    "llama3": PromptFormat(
        "llama3", "You are a helpful assistant.", "10 Apr 2025", template_emits_bos=True
    ),
    # Llama-2-chat: "<s>[INST] q [/INST]" + " answer </s>"; OU gives it no system prompt
    "llama2": PromptFormat("llama2", None, None, template_emits_bos=True),
    # Qwen2.5 Instruct (ChatML, no BOS token at all)
    "qwen2": PromptFormat("qwen2", "You are a helpful assistant.", None, template_emits_bos=False),
    # any other chat template: rendered as it is
    "chat": PromptFormat("chat"),
}
# the key of tokenizer_config.json that overrides a family's settings
OVERRIDE_KEY = "unlearn_prompt"
_PROBE_QUESTION = "Q?"
_PROBE_ANSWER = "A1b2c3 answer."


def detect_family(tokenizer: Any) -> str:
    """The prompt family of a tokenizer, from its chat template."""
    template = getattr(tokenizer, "chat_template", None)
    if not template or template == TINY_CHAT_TEMPLATE:
        return "plain"
    if isinstance(template, dict):  # several named templates: the default one
        template = template.get("default") or next(iter(template.values()), "")
    if "<|start_header_id|>" in template:
        return "llama3"
    if "[INST]" in template:
        return "llama2"
    if "<|im_start|>" in template:
        return "qwen2"
    return "chat"


def _override(tokenizer: Any) -> dict[str, Any]:
    raw = (getattr(tokenizer, "init_kwargs", None) or {}).get(OVERRIDE_KEY) or {}
    if not isinstance(raw, dict):
        raise ModelError(f"tokenizer_config.json {OVERRIDE_KEY!r} must be an object, got {raw!r}")
    known = {f.name for f in fields(PromptFormat)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ModelError(
            f"tokenizer_config.json {OVERRIDE_KEY}.{unknown[0]}: unknown key (known: "
            f"{', '.join(sorted(known))})"
        )
    if "family" in raw and raw["family"] not in FAMILIES:
        raise ModelError(
            f"tokenizer_config.json {OVERRIDE_KEY}.family: unknown family {raw['family']!r} "
            f"(known: {', '.join(FAMILIES)})"
        )
    return raw


def _chat(tokenizer: Any, messages: list[dict[str, str]], fmt: PromptFormat, gen: bool) -> str:
    extra = {"date_string": fmt.date_string} if fmt.date_string else {}
    return tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=gen, **extra
    )


def _messages(fmt: PromptFormat, system: str | None) -> list[dict[str, str]]:
    text = system if system is not None else fmt.system_prompt
    return [{"role": "system", "content": text}] if text else []


def prompt_format(tokenizer: Any) -> PromptFormat:
    """The tokenizer's ``PromptFormat``: its family's settings, the model directory's overrides,
    and what the chat template itself shows (cached on the tokenizer)."""
    if tokenizer is None:
        return FAMILIES["plain"]
    raw = _override(tokenizer)
    key = (
        str(getattr(tokenizer, "chat_template", None)),
        getattr(tokenizer, "bos_token", None),
        json.dumps(raw, sort_keys=True),
    )
    cached = getattr(tokenizer, "_unlearn_prompt_format", None)
    if cached is not None and cached[0] == key:
        return cached[1]
    fmt = FAMILIES[raw.get("family") or detect_family(tokenizer)]
    fmt = replace(fmt, **raw)
    if fmt.family != "plain" and (fmt.template_emits_bos is None or fmt.answer_prefix is None):
        probe = [*_messages(fmt, None), {"role": "user", "content": _PROBE_QUESTION}]
        prompt = _chat(tokenizer, probe, fmt, gen=True)
        bos = getattr(tokenizer, "bos_token", None)
        if fmt.template_emits_bos is None:
            fmt = replace(fmt, template_emits_bos=bool(bos) and prompt.startswith(bos))
        if fmt.answer_prefix is None:
            full = _chat(
                tokenizer, [*probe, {"role": "assistant", "content": _PROBE_ANSWER}], fmt, gen=False
            )
            at = full.find(_PROBE_ANSWER)
            prefix = full[len(prompt) : at] if full.startswith(prompt) and at >= len(prompt) else ""
            fmt = replace(fmt, answer_prefix=prefix)
    try:
        tokenizer._unlearn_prompt_format = (key, fmt)
    except AttributeError:  # a tokenizer that takes no attributes: recomputed each call
        pass
    return fmt


def format_prompt(question: str, tokenizer: Any = None, system: str | None = None) -> str:
    """The prompt text for ``question``: the model family's chat template (with its system prompt
    unless ``system`` is given) if it has one, else QA_TEMPLATE."""
    fmt = prompt_format(tokenizer)
    if fmt.family != "plain":
        messages = [*_messages(fmt, system), {"role": "user", "content": question}]
        return _chat(tokenizer, messages, fmt, gen=True)
    prefix = f"{system}\n" if system else ""
    return prefix + QA_TEMPLATE.format(question=question)


def format_fewshot_prompt(
    question: str, shots: list[tuple[str, str]], tokenizer: Any = None
) -> str:
    """A prompt with in-context examples first (MUSE KnowMem; open-unlearning renders them as
    earlier turns): plain "Question: q\nAnswer: a\n\n" blocks, or user / assistant turns of the
    chat template."""
    fmt = prompt_format(tokenizer)
    if fmt.family != "plain":
        messages = _messages(fmt, None)
        for q, a in shots:
            messages += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
        messages.append({"role": "user", "content": question})
        return _chat(tokenizer, messages, fmt, gen=True)
    blocks = [QA_TEMPLATE.format(question=q) + format_answer(a) + "\n\n" for q, a in shots]
    return "".join(blocks) + QA_TEMPLATE.format(question=question)


def format_answer(answer: str, prefix: str = " ") -> str:
    """The answer text as it follows the prompt (plain QA: a leading space, as in generation)."""
    return prefix + answer.strip()


def _with_bos(tokenizer: Any, ids: list[int], fmt: PromptFormat) -> list[int]:
    """BOS first unless the prompt already starts with it (a template that writes it)."""
    bos = tokenizer.bos_token_id
    if bos is None or (ids and ids[0] == bos):
        return ids
    if fmt.family != "plain" and fmt.template_emits_bos:
        raise ModelError(
            f"the {fmt.family} chat template writes BOS ({tokenizer.bos_token!r}) but the rendered "
            f"prompt does not tokenize to it (first id {ids[0] if ids else None}, bos_token_id "
            f"{bos}): register the BOS string as a special token, or set "
            f'"{OVERRIDE_KEY}": {{"template_emits_bos": false}} in tokenizer_config.json'
        )
    return [bos, *ids]


def prompt_ids(tokenizer: Any, text: str) -> list[int]:
    """Token ids of a prompt text with exactly one BOS (when the tokenizer has one)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return _with_bos(tokenizer, ids, prompt_format(tokenizer))


def encode_qa(
    tokenizer: Any, question: str, answer: str, max_length: int = 256
) -> dict[str, list[int]]:
    """Token ids and labels for one QA pair; prompt tokens are labelled IGNORE_INDEX.

    The prompt and answer are tokenized separately and concatenated, so the boundary is exact
    whatever the tokenizer merges. The answer ends with EOS. Sequences longer than ``max_length``
    are cut from the end of the answer (the prompt is kept whole). An empty question makes a
    plain-text row (``encode_text``).
    """
    if not question:
        return encode_text(tokenizer, answer, max_length)
    fmt = prompt_format(tokenizer)
    prompt = prompt_ids(tokenizer, format_prompt(question, tokenizer))
    answer_ids = tokenizer(
        format_answer(answer, fmt.answer_prefix or ""), add_special_tokens=False
    )["input_ids"]
    if tokenizer.eos_token_id is not None:
        answer_ids = [*answer_ids, tokenizer.eos_token_id]
    return _join(prompt, answer_ids, max_length)


def encode_text(tokenizer: Any, text: str, max_length: int = 256) -> dict[str, list[int]]:
    """A plain-text row (a passage): BOS (if any) then the text, every text token labelled, no
    EOS; cut to ``max_length`` tokens (open-unlearning's pretraining format, MUSE's corpora)."""
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if not bos:  # the first token cannot be predicted: it stays unlabelled
        bos, ids = ids[:1], ids[1:]
    return _join(bos, ids, max_length)


def encode_completion(tokenizer: Any, prefix: str) -> list[int]:
    """Token ids of a raw text prefix to continue (MUSE VerbMem): BOS then the text, no template."""
    ids = tokenizer(prefix, add_special_tokens=False)["input_ids"]
    bos = tokenizer.bos_token_id
    return ids if bos is None or (ids and ids[0] == bos) else [bos, *ids]


def _join(prompt: list[int], answer: list[int], max_length: int) -> dict[str, list[int]]:
    room = max_length - len(prompt)
    if room < 1:
        raise ValueError(
            f"prompt of {len(prompt)} tokens leaves no room for the answer (max_length={max_length})"
        )
    answer = answer[:room]
    return {"input_ids": prompt + answer, "labels": [IGNORE_INDEX] * len(prompt) + answer}


def encode_prompt(tokenizer: Any, question: str) -> list[int]:
    """Token ids of the prompt alone (what generation starts from), with exactly one BOS."""
    return prompt_ids(tokenizer, format_prompt(question, tokenizer))
