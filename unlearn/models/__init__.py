"""Models: Hugging Face causal LMs (safetensors), tiny test models, and prompt formatting."""

from unlearn.models.io import (
    ModelInfo,
    check_model,
    files_hash,
    load_model,
    load_tokenizer,
    model_hash,
    model_identity,
    save_model,
    state_dict_hash,
    weights_hash,
)
from unlearn.models.prompting import (
    IGNORE_INDEX,
    PromptFormat,
    encode_prompt,
    encode_qa,
    format_prompt,
    prompt_format,
)
from unlearn.models.tiny import SIZES, build_tiny_model, dataset_texts, train_tokenizer

__all__ = [
    "IGNORE_INDEX",
    "ModelInfo",
    "PromptFormat",
    "SIZES",
    "build_tiny_model",
    "check_model",
    "files_hash",
    "dataset_texts",
    "encode_prompt",
    "encode_qa",
    "format_prompt",
    "load_model",
    "load_tokenizer",
    "model_hash",
    "model_identity",
    "prompt_format",
    "save_model",
    "state_dict_hash",
    "train_tokenizer",
    "weights_hash",
]
