"""The learned half of the injection guard: a logistic head over all-MiniLM-L6-v2 sentence
embeddings, and how its probability and the patterns' score combine into one score.

The head (``injection_head.json`` beside this file, a few KB) was fitted offline by
``tests/corpora/train_injection_head.py`` on public corpora; nothing is fitted or downloaded
at run time. Pure functions on vectors: the embedding is computed by the caller (the gateway
runs MiniLM through llama.cpp), so the guards stay free of I/O.

The combined score is a two-feature logistic blend of the head's logit and the patterns'
score, shifted so that the default threshold (0.7) is the operating point chosen on the
calibration corpora: an ordinary prompt that trips a weak pattern is spared when the model
finds nothing, and a paraphrased attack that no pattern knows is caught by the model.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np

HEAD_FILE = "injection_head.json"
# MiniLM costs ~0.35 ms per token on one core: long texts are read as a head and a tail
# window (an instruction planted in a long document sits near one end, and the patterns
# read the whole text anyway).
WINDOW_CHARS = 400
_WHOLE_CHARS = 2 * WINDOW_CHARS


@dataclass(frozen=True, slots=True)
class InjectionHead:
    """The fitted head and blend: see the module docstring."""

    weights: np.ndarray[Any, np.dtype[np.float32]]
    bias: float
    model_weight: float  # blend: weight of the head's logit
    pattern_weight: float  # blend: weight of the patterns' score
    offset: float  # blend: intercept, shifted so the operating point scores 0.7
    info: dict[str, Any]

    def logit(self, vector: np.ndarray[Any, Any]) -> float:
        """The head's log-odds that the embedded text is an injection."""
        return float(np.dot(self.weights, vector)) + self.bias

    def probability(self, vector: np.ndarray[Any, Any]) -> float:
        return _sigmoid(self.logit(vector))

    @staticmethod
    def probability_of(logit: float) -> float:
        return _sigmoid(logit)

    def combine(self, pattern_score: float, model_logit: float) -> float:
        """The guard's score in [0, 1] from the patterns' score and the head's logit."""
        z = self.model_weight * model_logit + self.pattern_weight * pattern_score + self.offset
        return round(_sigmoid(z), 6)


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


@functools.cache
def load_head() -> InjectionHead:
    """The head shipped with the package (read once)."""
    data = json.loads(resources.files(__package__).joinpath(HEAD_FILE).read_text(encoding="utf-8"))
    return head_from_json(data)


def head_from_json(data: dict[str, Any]) -> InjectionHead:
    blend = data["blend"]
    return InjectionHead(
        weights=np.asarray(data["weights"], dtype=np.float32),
        bias=float(data["bias"]),
        model_weight=float(blend["model_weight"]),
        pattern_weight=float(blend["pattern_weight"]),
        offset=float(blend["offset"]),
        info={k: v for k, v in data.items() if k not in {"weights", "bias", "blend"}},
    )


def windows(text: str) -> list[str]:
    """What the embedder reads of one text: all of it, or its head and its tail when long."""
    text = text.strip()
    if len(text) <= _WHOLE_CHARS:
        return [text] if text else []
    head = text[:WINDOW_CHARS].rsplit(None, 1)[0] or text[:WINDOW_CHARS]
    tail = text[-WINDOW_CHARS:].split(None, 1)[-1] or text[-WINDOW_CHARS:]
    return [head, tail]
