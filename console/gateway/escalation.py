"""Small-to-large escalation: cheap checks on the small tier's answer, and the second attempt's plan.

A route with `escalation` answers with its own chain (the small tier) first. Its answer is
escalated to `escalation.large` when one of the route's checks fails:

- schema_invalid: the answer does not match the request's or the route's JSON schema;
- refusal: it declines ("I can't help with that", "As an AI language model…");
- low_confidence: it hedges ("I'm not sure", "I don't know", "it is unclear") or is empty;
  the providers give no token probabilities, so hedging words stand in for confidence;
- truncated: it stopped at max_tokens;
- guard: it calls a tool the route's tool policy does not list.

Only non-streamed calls escalate on checks (a streamed answer is already on its way to the
client); streams get the up-front choices (tools, risk, difficulty, declared tier). The
escalation runs under what is left of the request's one deadline; its worst case is
reserved with the first attempt's, both attempts are in the attempt log, and the trace's
cost and tokens are their sum.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from console.gateway.executor import Plan
from console.guards import schema as schema_guard
from console.policy import ToolPolicy
from console.providers.base import Body, Usage

MIN_ESCALATION_S = 1.0  # less time than this left: keep the small tier's answer

REFUSAL = re.compile(
    r"^\s*(?:i'?m sorry,? but |sorry,? )?(?:i (?:can(?:no|')t|cannot|am unable to|won'?t|am not able to))"
    r"|\bas an ai(?: language model)?\b",
    re.IGNORECASE,
)
HEDGE = re.compile(
    r"\b(?:i(?:'m| am) not (?:sure|certain)|i don'?t know|i do not know|it is unclear|it'?s unclear"
    r"|i(?:'m| am) unsure|hard to say|cannot determine|can'?t determine)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class Escalated:
    """The small tier's answer that failed a check: what it cost is added to the trace."""

    check: str
    target: str
    usage: Usage
    cost_usd: float

    def as_json(self) -> dict[str, Any]:
        return {"check": self.check, "from": self.target, "cost_usd": round(self.cost_usd, 8)}


def failed_check(
    body: Body, checks: Sequence[str], schema: dict[str, Any] | None, tools: ToolPolicy | None
) -> str | None:
    """The first of `checks` the answer fails, or None when it passes them all."""
    answer = _Answer.of(body)
    failing: dict[str, Callable[[], bool]] = {
        "schema_invalid": lambda: (
            schema is not None and not schema_guard.check_answers(answer.texts, schema).valid
        ),
        "refusal": lambda: any(bool(t and REFUSAL.search(t)) for t in answer.texts),
        "low_confidence": answer.hesitant,
        "truncated": lambda: "length" in answer.finish_reasons,
        "guard": lambda: tools is not None and answer.calls_unlisted(tools),
    }
    return next((check for check in checks if failing[check]()), None)


@dataclass(frozen=True, slots=True)
class _Answer:
    texts: list[str | None]
    calls: list[Body]
    finish_reasons: list[Any]

    @classmethod
    def of(cls, body: Body) -> _Answer:
        choices = [c for c in body.get("choices") or () if isinstance(c, dict)]
        return cls(
            [_text(choice) for choice in choices],
            [call for choice in choices for call in _tool_calls(choice)],
            [choice.get("finish_reason") for choice in choices],
        )

    def hesitant(self) -> bool:
        if self.calls:
            return False
        texts = [t for t in self.texts if t and t.strip()]
        return not texts or any(HEDGE.search(t) for t in texts)

    def calls_unlisted(self, tools: ToolPolicy) -> bool:
        listed = {*tools.allow, *tools.approval}
        return any((call.get("function") or {}).get("name") not in listed for call in self.calls)


def within(plan: Plan, seconds_left: float) -> Plan | None:
    """The large tier's plan under what is left of the request's deadline; None when too little is."""
    if seconds_left < MIN_ESCALATION_S:
        return None
    timeouts = plan.timeouts.model_copy(
        update={
            "total_s": seconds_left,
            "first_token_s": min(plan.timeouts.first_token_s, seconds_left),
            "idle_s": min(plan.timeouts.idle_s, seconds_left),
        }
    )
    return Plan(plan.targets, timeouts, plan.max_retries)


def combined(first: Usage, second: Usage) -> Usage:
    return Usage(
        input_tokens=first.input_tokens + second.input_tokens,
        output_tokens=first.output_tokens + second.output_tokens,
        cache_read_tokens=first.cache_read_tokens + second.cache_read_tokens,
        reasoning_tokens=first.reasoning_tokens + second.reasoning_tokens,
        cache_write_tokens=first.cache_write_tokens + second.cache_write_tokens,
    )


def _text(choice: Body) -> str | None:
    message = choice.get("message")
    text = message.get("content") if isinstance(message, dict) else choice.get("text")
    return text if isinstance(text, str) else None


def _tool_calls(choice: Body) -> list[Body]:
    message = choice.get("message")
    calls = message.get("tool_calls") if isinstance(message, dict) else None
    return [call for call in calls or () if isinstance(call, dict)]
