"""Guards: PII and secret redaction, and prompt-injection scoring, for the gateway pipeline.

Pure functions, no I/O, safe to call from any thread. Public API:

- ``scan(text) -> list[Finding]`` and ``redact(text) -> (text, counts_by_kind)``: PII and
  secrets in one string (see ``console.guards.pii`` for what is detected and how).
- ``redact_body(body) -> (body, counts_by_kind)``: a redacted copy of an OpenAI request,
  response or stream-chunk body; the input is not mutated.
- ``injection_score(text, source="user") -> InjectionResult``: score in [0, 1] and signals
  (see ``console.guards.injection``); ``source="retrieved"`` for tool / retrieval content.
- ``score_request(body, threshold=0.7) -> InjectionResult``: the highest score over a
  request's user and tool messages; unpacks as ``score, signals``.
- ``request_texts(body)``: the ``(where, source, text)`` that ``score_request`` reads;
  ``score_texts(body)`` adds each text's ``InjectionResult``.
- ``load_head()`` (``console.guards.injection_model``): the learned half of the injection
  guard, a logistic head over MiniLM sentence embeddings, and its blend with the patterns.
"""

from console.guards.body import redact_body, request_texts, score_request, score_texts
from console.guards.injection import DEFAULT_THRESHOLD, InjectionResult, Signal, injection_score
from console.guards.injection_model import InjectionHead, load_head, windows
from console.guards.pii import KINDS, PLACEHOLDERS, Finding, redact, scan

__all__ = [
    "DEFAULT_THRESHOLD",
    "KINDS",
    "PLACEHOLDERS",
    "Finding",
    "InjectionHead",
    "InjectionResult",
    "Signal",
    "injection_score",
    "load_head",
    "redact",
    "redact_body",
    "request_texts",
    "scan",
    "score_request",
    "score_texts",
    "windows",
]
