"""The asserts of a golden case, checked against one answer of the gateway.

Rule-based asserts need only the answer's text; `cost` and `latency` read the trace's
own numbers (what the gateway priced and measured); `llm-rubric` asks a judge model
through the gateway. `similar` is lexical: the cosine of the word counts of the two
texts (no embedding model is needed, so it runs anywhere and is deterministic).
Every type also exists negated (`not-contains`, …), as in promptfoo.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from console.guards import schema as schema_guard
from console.quality.golden import SIMILAR_THRESHOLD, Assertion

WORD = re.compile(r"\w+")
Judge = Callable[[str, str], tuple[bool, str]]  # (rubric, answer) → (passes, why)


@dataclass(frozen=True, slots=True)
class Answer:
    """What the gateway made of one case: the text, or the error; the trace's numbers."""

    text: str | None
    http_status: int
    request_id: str | None = None
    error: str | None = None
    cost_usd: float | None = None
    latency_ms: float | None = None
    tokens: int | None = None  # input + output, as the trace counted them


@dataclass(frozen=True, slots=True)
class AssertResult:
    type: str
    passed: bool
    reason: str
    weight: float = 1.0

    def as_json(self) -> dict[str, Any]:
        return {"type": self.type, "passed": self.passed, "reason": self.reason, "weight": self.weight}


def check(assertion: Assertion, answer: Answer, judge: Judge) -> AssertResult:
    if answer.http_status != 200 or answer.text is None:
        why = answer.error or "no text in the answer"
        return AssertResult(assertion.type, False, f"no answer: {answer.http_status} {why}", assertion.weight)
    passed, reason = CHECKS[assertion.base_type](assertion, answer, judge)
    if assertion.negated:
        passed, reason = not passed, f"expected the opposite: {reason}"
    return AssertResult(assertion.type, passed, reason, assertion.weight)


def similarity(first: str, second: str) -> float:
    """Cosine of the two texts' lower-cased word counts, 0..1."""
    a, b = Counter(WORD.findall(first.lower())), Counter(WORD.findall(second.lower()))
    dot = sum(count * b[word] for word, count in a.items())
    norm = math.sqrt(sum(c * c for c in a.values())) * math.sqrt(sum(c * c for c in b.values()))
    return dot / norm if norm else 0.0


def _text(answer: Answer) -> str:
    return answer.text or ""


def _equals(assertion: Assertion, answer: Answer, judge: Judge) -> tuple[bool, str]:
    if isinstance(assertion.value, dict | list):
        try:
            document = orjson.loads(_text(answer))
        except orjson.JSONDecodeError:
            return False, "the answer is not JSON, so it cannot equal the expected document"
        return document == assertion.value, "equal JSON" if document == assertion.value else "different JSON"
    same = _text(answer).strip() == str(assertion.value).strip()
    return same, "equal" if same else f"expected {_quote(str(assertion.value))}, got {_quote(_text(answer))}"


def _contains(assertion: Assertion, answer: Answer, judge: Judge) -> tuple[bool, str]:
    found = str(assertion.value) in _text(answer)
    return found, f"{'contains' if found else 'does not contain'} {_quote(str(assertion.value))}"


def _icontains(assertion: Assertion, answer: Answer, judge: Judge) -> tuple[bool, str]:
    found = str(assertion.value).lower() in _text(answer).lower()
    return found, f"{'contains' if found else 'does not contain'} {_quote(str(assertion.value))} (any case)"


def _regex(assertion: Assertion, answer: Answer, judge: Judge) -> tuple[bool, str]:
    found = re.search(str(assertion.value), _text(answer)) is not None
    return found, f"{'matches' if found else 'does not match'} /{assertion.value}/"


def _is_json(assertion: Assertion, answer: Answer, judge: Judge) -> tuple[bool, str]:
    verdict = schema_guard.check_output(_text(answer), assertion.value or {})
    return verdict.valid, "valid JSON" if verdict.valid else str(verdict.error)


def _json_schema(assertion: Assertion, answer: Answer, judge: Judge) -> tuple[bool, str]:
    verdict = schema_guard.check_output(_text(answer), assertion.value)
    return verdict.valid, "matches the schema" if verdict.valid else str(verdict.error)


def _similar(assertion: Assertion, answer: Answer, judge: Judge) -> tuple[bool, str]:
    threshold = SIMILAR_THRESHOLD if assertion.threshold is None else assertion.threshold
    score = similarity(_text(answer), str(assertion.value))
    return score >= threshold, f"lexical similarity {score:.2f} (needs {threshold:.2f})"


def _cost(assertion: Assertion, answer: Answer, judge: Judge) -> tuple[bool, str]:
    limit = float(assertion.threshold or 0)
    if answer.cost_usd is None:
        return False, "the trace has no cost"
    return answer.cost_usd <= limit, f"cost ${answer.cost_usd:.6f} (at most ${limit:.6f})"


def _latency(assertion: Assertion, answer: Answer, judge: Judge) -> tuple[bool, str]:
    limit = float(assertion.threshold or 0)
    if answer.latency_ms is None:
        return False, "the trace has no latency"
    return answer.latency_ms <= limit, f"latency {answer.latency_ms:.0f} ms (at most {limit:.0f} ms)"


def _llm_rubric(assertion: Assertion, answer: Answer, judge: Judge) -> tuple[bool, str]:
    passed, why = judge(str(assertion.value), _text(answer))
    return passed, f"judge: {why}"


def _quote(text: str, limit: int = 60) -> str:
    text = text.replace("\n", " ")
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


CHECKS: dict[str, Callable[[Assertion, Answer, Judge], tuple[bool, str]]] = {
    "equals": _equals,
    "contains": _contains,
    "icontains": _icontains,
    "regex": _regex,
    "is-json": _is_json,
    "json-schema": _json_schema,
    "similar": _similar,
    "cost": _cost,
    "latency": _latency,
    "llm-rubric": _llm_rubric,
}
