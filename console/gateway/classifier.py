"""Intent and risk for a request that names no intent: rules first, then a small router model.

Rules, in order: a tool the request offers that a route's `match.tools` lists; then the
keywords and patterns of every route's `match` (the user's text and the system prompt),
when one route scores strictly more hits than any other. What the rules leave open goes
to the router model (the policy's `classifier.model`, by default the bundled SmolLM2),
asked for one intent under a JSON schema whose enum is the policy's intents, so its answer
is always one of them. It is sampled `votes` times (first greedy, then seeded samples); the
confidence is the share of samples that agree with the greedy answer. Below
`min_confidence`, or when the model does not answer within `timeout_s`, the request keeps
the default route.

Risk is rules only (the router model's risk answers were no better than chance): keywords
about money back, payments, legal threats, personal data and account security, a payment
tool offered, and the policy's own `classifier.risk_keywords`.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from console.policy import ClassifierConfig, Policy, Route
from console.providers.base import Body, Provider, ProviderError

log = logging.getLogger("fleetdeck.gateway")

Risk = Literal["low", "high"]
TEXT_LIMIT = 1500  # characters of the request the router model reads
RISK_KEYWORDS = (
    "refund",
    "refunds",
    "money back",
    "chargeback",
    "double charged",
    "charged twice",
    "reverse one of the payments",
    "reverse the payment",
    "sue",
    "lawsuit",
    "legal action",
    "lawyer",
    "gdpr",
    "personal data",
    "data breach",
    "fraud",
    "hacked",
    "accessed my account",
    "locked out",
    "iban",
    "wire money",
    "caught fire",
    "injury",
    "journalist",
    "salaries",
)
RISKY_TOOL = re.compile(r"(^|\.)(payments?|refunds?|transfers?)(\.|$)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Classification:
    intent: str
    risk: Risk
    by: Literal["rules", "model", "default"]
    confidence: float
    signals: tuple[str, ...] = ()  # what decided: rule hits, or the router model's votes
    model_ms: float | None = None

    def as_json(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "intent": self.intent,
            "risk": self.risk,
            "by": self.by,
            "confidence": round(self.confidence, 3),
            "signals": list(self.signals),
        }
        if self.model_ms is not None:
            found["model_ms"] = round(self.model_ms, 1)
        return found


@dataclass(frozen=True, slots=True)
class _Rules:
    intent: str
    words: re.Pattern[str] | None
    patterns: tuple[re.Pattern[str], ...]
    tools: frozenset[str]

    def hits(self, text: str) -> list[str]:
        found = [m.group(0).lower() for m in self.words.finditer(text)] if self.words else []
        return found + [p.pattern for p in self.patterns if p.search(text)]


@dataclass
class IntentClassifier:
    settings: ClassifierConfig
    routes: Sequence[Route]
    default_intent: str | None
    provider: Provider | None
    _rules: list[_Rules] = field(init=False)
    _risk: re.Pattern[str] = field(init=False)

    def __post_init__(self) -> None:
        self._rules = [_rules_of(route) for route in self.routes]
        self._risk = _words([*RISK_KEYWORDS, *self.settings.risk_keywords]) or re.compile(r"(?!)")

    @classmethod
    def from_policy(cls, policy: Policy, providers: Mapping[str, Provider]) -> IntentClassifier | None:
        settings = policy.classifier
        if settings is None:
            return None
        return cls(settings, policy.routes, policy.default_route, providers.get(settings.model.provider))

    async def classify(self, body: Body) -> Classification:
        text, system = request_text(body)
        tools = offered_tools(body)
        risk, risk_signals = self.risk(f"{system}\n{text}", tools)
        ruled = self._by_rules(text, system, tools)
        if ruled is not None:
            intent, confidence, signals = ruled
            return Classification(intent, risk, "rules", confidence, (*signals, *risk_signals))
        return await self._by_model(text, risk, risk_signals)

    def risk(self, text: str, tools: Sequence[str]) -> tuple[Risk, tuple[str, ...]]:
        signals = [f"risk:{m.group(0).lower()}" for m in self._risk.finditer(text)]
        signals += [f"risk-tool:{name}" for name in tools if RISKY_TOOL.search(name)]
        return ("high" if signals else "low"), tuple(dict.fromkeys(signals))

    def _by_rules(self, text: str, system: str, tools: Sequence[str]) -> tuple[str, float, list[str]] | None:
        for rules in self._rules:
            offered = sorted(rules.tools.intersection(tools))
            if offered:
                return rules.intent, 1.0, [f"tool:{name}" for name in offered]
        scored = sorted(
            ((rules.hits(f"{system}\n{text}"), rules.intent) for rules in self._rules),
            key=lambda item: len(item[0]),
            reverse=True,
        )
        if not scored or not scored[0][0]:
            return None
        best, runner_up = len(scored[0][0]), len(scored[1][0]) if len(scored) > 1 else 0
        if best == runner_up:
            return None
        return scored[0][1], best / (best + runner_up), [f"keyword:{hit}" for hit in scored[0][0]]

    async def _by_model(self, text: str, risk: Risk, risk_signals: tuple[str, ...]) -> Classification:
        fallback = self.default_intent
        started = time.perf_counter()
        if self.provider is None or not text.strip():
            return Classification(fallback or "", risk, "default", 0.0, ("no-router-model", *risk_signals))
        try:
            async with asyncio.timeout(self.settings.timeout_s):
                votes = [await self._ask(text, vote) for vote in range(self.settings.votes)]
        except (TimeoutError, ProviderError) as exc:
            log.warning("router model gave no intent: %s", exc)
            elapsed = (time.perf_counter() - started) * 1000
            return Classification(
                fallback or "", risk, "default", 0.0, ("router-model-failed", *risk_signals), elapsed
            )
        elapsed = (time.perf_counter() - started) * 1000
        first = votes[0]
        confidence = sum(vote == first for vote in votes) / len(votes)
        signals = (f"votes:{','.join(v or '?' for v in votes)}", *risk_signals)
        if first is None or confidence < self.settings.min_confidence:
            return Classification(fallback or "", risk, "default", confidence, signals, elapsed)
        return Classification(first, risk, "model", confidence, signals, elapsed)

    async def _ask(self, text: str, vote: int) -> str | None:
        assert self.provider is not None
        intents = [route.intent for route in self.routes]
        menu = "\n".join(f"- {route.intent}: {_description(route)}" for route in self.routes)
        body: Body = {
            "messages": [
                {
                    "role": "system",
                    "content": f"Which intent fits the user's request? Intents:\n{menu}\n"
                    "Answer with the intent's name.",
                },
                {"role": "user", "content": text[:TEXT_LIMIT]},
            ],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "intent", "schema": {"enum": intents}},
            },
            "max_tokens": 24,
            "temperature": 0.0 if vote == 0 else 1.0,
            "seed": vote,
        }
        answer = await self.provider.chat(self.settings.model.model, body)
        try:
            content = answer["choices"][0]["message"]["content"]
            chosen = orjson.loads(content)
        except (KeyError, IndexError, TypeError, orjson.JSONDecodeError):
            return None
        return chosen if chosen in intents else None


def request_text(body: Body) -> tuple[str, str]:
    """(the user's words, the system prompt): the last user message, or the completion prompt."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        prompt = body.get("prompt")
        return (prompt if isinstance(prompt, str) else ""), ""
    system = " ".join(
        _content(m) for m in messages if isinstance(m, dict) and m.get("role") in ("system", "developer")
    )
    users = [_content(m) for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    return (users[-1] if users else ""), system


def offered_tools(body: Body) -> list[str]:
    names = []
    for tool in body.get("tools") or ():
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            names.append(function["name"])
    return names


def _content(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            str(p.get("text")) for p in content if isinstance(p, dict) and p.get("type") == "text"
        )
    return ""


def _rules_of(route: Route) -> _Rules:
    match = route.match
    if match is None:
        return _Rules(route.intent, None, (), frozenset())
    patterns = tuple(re.compile(p, re.IGNORECASE) for p in match.patterns)
    return _Rules(route.intent, _words(match.keywords), patterns, frozenset(match.tools))


def _words(phrases: Sequence[str]) -> re.Pattern[str] | None:
    """Whole words or phrases, any case; whitespace inside a phrase matches any run of it."""
    if not phrases:
        return None
    alternatives = sorted(
        {r"\s+".join(map(re.escape, p.split())) for p in phrases if p.strip()}, key=len, reverse=True
    )
    return re.compile(r"(?<!\w)(?:" + "|".join(alternatives) + r")(?!\w)", re.IGNORECASE)


def _description(route: Route) -> str:
    if route.match is not None and route.match.description:
        return route.match.description
    return route.intent.replace("_", " ")
