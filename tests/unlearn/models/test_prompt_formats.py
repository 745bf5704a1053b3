"""Prompt formats of real model families, with their chat templates written into locally trained
test tokenizers (the template strings are the public ones of the Hugging Face model repos, tool
branches left out; nothing is downloaded)."""

from __future__ import annotations

import json

import pytest

from unlearn.errors import ModelError
from unlearn.models import encode_prompt, encode_qa, format_prompt, load_tokenizer, train_tokenizer
from unlearn.models.prompting import (
    IGNORE_INDEX,
    detect_family,
    encode_completion,
    encode_text,
    format_fewshot_prompt,
    prompt_format,
)

# meta-llama/Llama-3.2-1B-Instruct (tool-calling branches omitted)
LLAMA3 = (
    "{{- bos_token }}\n"
    "{%- if not date_string is defined %}\n"
    '    {%- set date_string = "26 Jul 2024" %}\n'
    "{%- endif %}\n"
    "{%- if messages[0]['role'] == 'system' %}\n"
    "    {%- set system_message = messages[0]['content']|trim %}\n"
    "    {%- set messages = messages[1:] %}\n"
    "{%- else %}\n"
    '    {%- set system_message = "" %}\n'
    "{%- endif %}\n"
    '{{- "<|start_header_id|>system<|end_header_id|>\\n\\n" }}\n'
    '{{- "Cutting Knowledge Date: December 2023\\n" }}\n'
    '{{- "Today Date: " + date_string + "\\n\\n" }}\n'
    "{{- system_message }}\n"
    '{{- "<|eot_id|>" }}\n'
    "{%- for message in messages %}\n"
    "    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
    "+ message['content'] | trim + '<|eot_id|>' }}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n"
    "    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}\n"
    "{%- endif %}\n"
)
# meta-llama/Llama-2-7b-chat-hf
LLAMA2 = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}"
    "{% set loop_messages = messages %}{% set system_message = false %}{% endif %}"
    "{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}"
    "{% endif %}{% endfor %}"
)
# Qwen/Qwen2.5-1.5B-Instruct (tool branches omitted)
QWEN2 = (
    "{%- if messages[0]['role'] == 'system' %}\n"
    "    {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\n"
    "{%- else %}\n"
    "    {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
    "assistant.<|im_end|>\\n' }}\n"
    "{%- endif %}\n"
    "{%- for message in messages %}\n"
    '    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or '
    '(message.role == "assistant") %}\n'
    "        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}\n"
    "    {%- endif %}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n"
    "    {{- '<|im_start|>assistant\\n' }}\n"
    "{%- endif %}\n"
)
TEXTS = ["Where was Ann born? Ann was born in Oslo.", "Question: Answer: system user assistant"]


def family_tokenizer(family: str):
    """A local BPE tokenizer dressed as the family's (special tokens, BOS / EOS, template)."""
    tok = train_tokenizer(TEXTS * 20, 400)
    if family == "llama3":
        tok.add_special_tokens(
            {
                "bos_token": "<|begin_of_text|>",
                "eos_token": "<|eot_id|>",
                "additional_special_tokens": ["<|start_header_id|>", "<|end_header_id|>"],
            }
        )
        tok.chat_template = LLAMA3
    elif family == "llama2":
        tok.chat_template = LLAMA2  # bos <s>, eos </s> as Llama-2's
    else:
        tok.add_special_tokens(
            {"eos_token": "<|im_end|>", "additional_special_tokens": ["<|im_start|>"]}
        )
        tok.bos_token = None  # Qwen2 tokenizers have no BOS
        tok.chat_template = QWEN2
    return tok


@pytest.mark.parametrize("family", ["llama3", "llama2", "qwen2"])
def test_an_encoded_prompt_has_exactly_one_bos(family):
    tok = family_tokenizer(family)
    assert detect_family(tok) == family
    ex = encode_qa(tok, "Where was Ann born?", "Ann was born in Oslo.", 128)
    prompt = encode_prompt(tok, "Where was Ann born?")
    if family == "qwen2":
        assert tok.bos_token_id is None
        assert ex["input_ids"][0] == tok.convert_tokens_to_ids("<|im_start|>")
    else:
        assert (
            ex["input_ids"].count(tok.bos_token_id) == 1 and ex["input_ids"][0] == tok.bos_token_id
        )
        assert prompt.count(tok.bos_token_id) == 1
    # the prompt is the same in training and generation; the answer ends with the model's EOS
    n_prompt = sum(1 for y in ex["labels"] if y == IGNORE_INDEX)
    assert ex["input_ids"][:n_prompt] == prompt
    assert ex["input_ids"][-1] == tok.eos_token_id


def test_llama3_gets_open_unlearnings_system_prompt_and_date():
    tok = family_tokenizer("llama3")
    fmt = prompt_format(tok)
    assert (fmt.system_prompt, fmt.date_string, fmt.template_emits_bos, fmt.answer_prefix) == (
        "You are a helpful assistant.", "10 Apr 2025", True, "",
    )  # fmt: skip
    text = format_prompt("Where was Ann born?", tok)
    assert text == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
        "Cutting Knowledge Date: December 2023\nToday Date: 10 Apr 2025\n\n"
        "You are a helpful assistant.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n"
        "Where was Ann born?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    # the answer follows the assistant header directly (no space), as the template renders it
    ex = encode_qa(tok, "Where was Ann born?", "Ann was born in Oslo.", 128)
    n_prompt = sum(1 for y in ex["labels"] if y == IGNORE_INDEX)
    answer = tok.decode(ex["input_ids"][n_prompt:-1])
    assert answer == "Ann was born in Oslo."
    # a caller's own system prompt wins
    assert "Be brief." in format_prompt("Q?", tok, system="Be brief.")


def test_llama2_and_qwen_answer_boundaries_come_from_their_templates():
    l2 = prompt_format(family_tokenizer("llama2"))
    assert (l2.system_prompt, l2.template_emits_bos, l2.answer_prefix) == (None, True, " ")
    assert format_prompt("Q?", family_tokenizer("llama2")) == "<s>[INST] Q? [/INST]"
    qw = family_tokenizer("qwen2")
    fmt = prompt_format(qw)
    assert (fmt.system_prompt, fmt.template_emits_bos, fmt.answer_prefix) == (
        "You are a helpful assistant.", False, "",
    )  # fmt: skip
    assert format_prompt("Q?", qw).startswith("<|im_start|>system\nYou are a helpful assistant.")


def test_plain_format_is_unchanged_for_tiny_models(nano_model_dir):
    tok = load_tokenizer(nano_model_dir)
    fmt = prompt_format(tok)
    assert (fmt.family, fmt.answer_prefix) == ("plain", " ")
    ex = encode_qa(tok, "Where was Ann born?", "Ann was born in Oslo.")
    body = tok("Question: Where was Ann born?\nAnswer:", add_special_tokens=False)["input_ids"]
    answer = tok(" Ann was born in Oslo.", add_special_tokens=False)["input_ids"]
    assert ex["input_ids"] == [tok.bos_token_id, *body, *answer, tok.eos_token_id]


def test_overrides_in_the_model_directory(tmp_path):
    tok = family_tokenizer("llama3")
    tok.init_kwargs["unlearn_prompt"] = {"system_prompt": None, "date_string": "1 Jan 2025"}
    tok.save_pretrained(tmp_path / "tok")
    back = load_tokenizer(tmp_path / "tok")
    text = format_prompt("Q?", back)
    assert "Today Date: 1 Jan 2025" in text and "helpful assistant" not in text
    cfg = json.loads((tmp_path / "tok" / "tokenizer_config.json").read_text())
    cfg["unlearn_prompt"] = {"sytem_prompt": "typo"}
    (tmp_path / "tok" / "tokenizer_config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelError, match="unlearn_prompt.sytem_prompt: unknown key"):
        format_prompt("Q?", load_tokenizer(tmp_path / "tok"))


def test_a_template_bos_that_does_not_tokenize_is_refused():
    tok = family_tokenizer("llama3")
    tok.chat_template = LLAMA3.replace("{{- bos_token }}", "{{- 'BOS' }}")
    tok.init_kwargs["unlearn_prompt"] = {"template_emits_bos": True}
    with pytest.raises(ModelError, match="writes BOS"):
        encode_prompt(tok, "Q?")


def test_text_completion_and_fewshot_rows(nano_model_dir):
    tok = load_tokenizer(nano_model_dir)
    text = encode_text(tok, "Ann was born in Oslo.", 64)
    ids = tok("Ann was born in Oslo.", add_special_tokens=False)["input_ids"]
    assert text["input_ids"] == [tok.bos_token_id, *ids]  # no template, no EOS
    assert text["labels"] == [IGNORE_INDEX, *ids]
    assert encode_qa(tok, "", "Ann was born in Oslo.", 64) == text  # an empty question: text
    assert encode_completion(tok, "Ann was") == [tok.bos_token_id, *tok("Ann was")["input_ids"]]
    assert format_fewshot_prompt("Q3?", [("Q1?", "A1"), ("Q2?", "A2")], tok) == (
        "Question: Q1?\nAnswer: A1\n\nQuestion: Q2?\nAnswer: A2\n\nQuestion: Q3?\nAnswer:"
    )
    chat = format_fewshot_prompt("Q3?", [("Q1?", "A1")], family_tokenizer("llama3"))
    assert (
        chat.count("<|begin_of_text|>") == 1 and "Q1?<|eot_id|>" in chat and "A1<|eot_id|>" in chat
    )
