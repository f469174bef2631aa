"""Route choice: from a request's `model` (and intent) to an ordered plan of targets.

`model` may be `route:<intent>`, a concrete `provider/model`, a bare intent or a bare
model name that exactly one provider serves; with no model, the request's intent
header picks the route, else the policy's default route. When the policy has a
`classifier` and a request names no intent (no model or `route:auto`, no intent header),
the classifier picks the route and a risk level first (console.gateway.classifier).

`refine` then shapes the plan of a route (not of a pinned provider/model) for the request,
each step with its reason code:

1. context-budget-exceeded: a prompt over the route's context_budget_tokens skips the
   primary for the next candidate (refused with 400 when there is none);
2. tiers, on a route with `escalation`: tools offered (tool-call-required), high risk
   (risk-high-flagged), a declared tier of `large`, or a predicted difficulty above the
   route's threshold (escalation-difficulty) send the call to the large tier first;
   otherwise the small tier answers (cost-tier-downgrade) and may escalate after its
   answer (console.gateway.escalation);
3. latency-slo-override: a route whose primary breaks its latency SLO starts with the
   fastest other candidate (console.gateway.slo).

A route with `balance` starts with the deployment its strategy picks (console.gateway.balancer),
reason code `balanced-<strategy>`, its sibling deployments next, then the fallbacks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from console.gateway.balancer import Balancer
from console.gateway.classifier import Classification, IntentClassifier, offered_tools
from console.gateway.executor import Attempt, Plan, Target
from console.gateway.openai_api import ApiError
from console.gateway.slo import LatencySlos
from console.policy import Policy, Route
from console.providers.base import Body, Provider
from console.routing.difficulty import BYTES_PER_TOKEN, DifficultyModel, request_features

ROUTE_PREFIX = "route:"
AUTO_MODEL = "route:auto"  # let the classifier pick the route
LARGE_TIER = "large"


@dataclass(frozen=True, slots=True)
class Decision:
    plan: Plan
    route: str | None  # the route's intent; None for a concrete model outside any route
    tier: str | None
    reason_code: str
    pinned: bool = False  # the request named a provider/model: refine leaves it alone
    escalation: Plan | None = None  # the large tier, should the small tier's answer fail a check
    checks: tuple[str, ...] = ()
    notes: dict[str, Any] = field(default_factory=dict)  # why, for guard_results.routing


class Router:
    def __init__(
        self,
        policy: Policy,
        providers: Mapping[str, Provider],
        difficulty: Mapping[str, DifficultyModel] | None = None,
    ) -> None:
        self._policy = policy
        self._providers = providers
        self._routes = {route.intent: route for route in policy.routes}
        self._by_model = self._models_index()
        self._classifier = IntentClassifier.from_policy(policy, providers)
        self._difficulty = dict(difficulty or {})  # fitted by `fleetdeck routing calibrate`
        self.slos = LatencySlos()
        self.balancer = Balancer(lambda target: getattr(providers.get(target.provider), "limits", None))

    async def classify(self, body: Body, intent: str | None) -> Classification | None:
        """Intent and risk of a request that names no intent, when the policy has a classifier."""
        model = body.get("model")
        if self._classifier is None or intent or (model and model != AUTO_MODEL):
            return None
        return await self._classifier.classify(body)

    def decide(self, model: str | None, intent: str | None) -> Decision:
        if not model or model == AUTO_MODEL:
            return self._route_decision(self._route_for_intent(intent))
        if model.startswith(ROUTE_PREFIX):
            return self._route_decision(self._named_route(model.removeprefix(ROUTE_PREFIX)))
        provider, sep, name = model.partition("/")
        if sep and provider in self._providers:
            return self._direct(Target(provider, name), intent)
        if model in self._routes:
            return self._route_decision(self._routes[model])
        owners = self._by_model.get(model, [])
        if len(owners) == 1:
            return self._direct(Target(owners[0], model), intent)
        raise self._unknown(model, ambiguous=len(owners) > 1)

    def route(self, intent: str | None) -> Route | None:
        return self._routes.get(intent) if intent else None

    def refine(
        self,
        decision: Decision,
        body: Body,
        classification: Classification | None = None,
        declared_tier: str | None = None,
        step: int | None = None,
    ) -> Decision:
        """The route's plan for this request: context budget, tiers, latency SLO (see the module doc)."""
        route = self.route(decision.route)
        if route is None or decision.pinned:
            return decision
        decision = self._context_budget(decision, route, body)
        if route.escalation is not None and decision.reason_code != "context-budget-exceeded":
            decision = self._tiers(decision, route, body, classification, declared_tier, step)
        return self._latency_slo(decision, route)

    def observe(self, intent: str | None, attempts: Sequence[Attempt]) -> None:
        """Feed a finished call's attempts to its route's latency windows."""
        route = self.route(intent)
        if route is not None:
            self.slos.observe(route, attempts)

    def _context_budget(self, decision: Decision, route: Route, body: Body) -> Decision:
        budget = route.context_budget_tokens
        if budget is None:
            return decision
        tokens = sum(len(orjson.dumps(body.get(k))) for k in ("messages", "prompt") if k in body)
        tokens //= BYTES_PER_TOKEN
        if tokens <= budget:
            return decision
        large = route.escalation.large if route.escalation else []
        rest = decision.plan.targets[1:] + tuple(Target(ref.provider, ref.model) for ref in large)
        if not rest:
            raise ApiError(
                400,
                f"the prompt is about {tokens} tokens, over route {route.intent!r}'s context budget "
                f"of {budget} (context_budget_tokens), and the route has no other candidate",
                param="messages",
                code="context_budget_exceeded",
            )
        notes = {**decision.notes, "context_tokens_estimate": tokens, "context_budget_tokens": budget}
        plan = replace(decision.plan, targets=rest)
        return replace(
            decision, plan=plan, reason_code="context-budget-exceeded", escalation=None, notes=notes
        )

    def _tiers(
        self,
        decision: Decision,
        route: Route,
        body: Body,
        classification: Classification | None,
        declared_tier: str | None,
        step: int | None,
    ) -> Decision:
        assert route.escalation is not None
        large = Plan(
            tuple(Target(ref.provider, ref.model) for ref in route.escalation.large),
            route.timeouts,
            route.max_retries,
        )
        notes = dict(decision.notes)
        reason = None
        if offered_tools(body) and body.get("tool_choice") != "none":
            reason = "tool-call-required"
        elif classification is not None and classification.risk == "high":
            reason = "risk-high-flagged"
        elif declared_tier == LARGE_TIER:
            reason = "primary"
        elif declared_tier is None:
            reason = self._difficulty_reason(route, body, step, notes)
        if reason is not None:
            return replace(decision, plan=large, tier=LARGE_TIER, reason_code=reason, notes=notes)
        answers_text = "messages" in body or "prompt" in body  # not embeddings
        checks = tuple(route.escalation.checks) if answers_text and not body.get("stream") else ()
        return replace(
            decision,
            reason_code="cost-tier-downgrade",
            escalation=large if checks else None,
            checks=checks,
            notes=notes,
        )

    def _difficulty_reason(
        self, route: Route, body: Body, step: int | None, notes: dict[str, Any]
    ) -> str | None:
        model = self._difficulty.get(route.intent)
        if model is None or route.escalation is None:
            return None
        threshold = route.escalation.difficulty_threshold
        threshold = model.threshold if threshold is None else threshold
        score = model.score(request_features(body, step))
        notes["difficulty"] = {"score": round(score, 4), "threshold": round(threshold, 4)}
        return "escalation-difficulty" if score > threshold else None

    def _latency_slo(self, decision: Decision, route: Route) -> Decision:
        if route.latency_slo_ms is None or decision.plan.targets[:1] != (
            Target(route.primary.provider, route.primary.model),
        ):
            return decision
        choice = self.slos.choose(route, decision.plan.targets)
        notes = {**decision.notes, "latency_slo": choice.as_json(route.latency_slo_ms)}
        if not choice.overridden or choice.probe:
            return replace(decision, notes=notes)
        plan = replace(decision.plan, targets=choice.targets)
        return replace(decision, plan=plan, reason_code="latency-slo-override", notes=notes)

    def known_models(self) -> list[str]:
        """What GET /v1/models lists: every route and every provider/model."""
        served = [f"{provider}/{model}" for model, owners in self._by_model.items() for provider in owners]
        return [f"{ROUTE_PREFIX}{intent}" for intent in self._routes] + sorted(served)

    def _route_decision(self, route: Route) -> Decision:
        fallbacks = tuple(Target(ref.provider, ref.model) for ref in route.fallback)
        if route.balance is None:
            targets = (Target(route.primary.provider, route.primary.model), *fallbacks)
            return Decision(
                Plan(targets, route.timeouts, route.max_retries), route.intent, route.tier, "primary"
            )
        balanced = self.balancer.order(route)
        plan = Plan(balanced.targets + fallbacks, route.timeouts, route.max_retries, len(balanced.targets))
        notes = {"balance": balanced.as_json()}
        return Decision(plan, route.intent, route.tier, balanced.reason_code, notes=notes)

    def _direct(self, target: Target, intent: str | None) -> Decision:
        known = self._providers[target.provider].models()
        if known and target.model not in known:
            raise self._unknown(target.name, ambiguous=False)
        route = self._routes.get(intent) if intent else None
        if route is None:
            return Decision(Plan((target,)), None, None, "primary", pinned=True)
        return Decision(
            Plan((target,), route.timeouts, route.max_retries),
            route.intent,
            route.tier,
            "primary",
            pinned=True,
        )

    def _route_for_intent(self, intent: str | None) -> Route:
        if intent:
            return self._named_route(intent)
        default = self._policy.default_route
        if default is None:
            raise ApiError(
                400, "'model' is required: name a route:<intent> or a provider/model", param="model"
            )
        return self._routes[default]

    def _named_route(self, intent: str) -> Route:
        if intent == "default" and intent not in self._routes and self._policy.default_route:
            intent = self._policy.default_route
        route = self._routes.get(intent)
        if route is None:
            known = ", ".join(sorted(self._routes)) or "none"
            raise ApiError(
                404, f"no route for intent {intent!r}; routes: {known}", param="model", code="model_not_found"
            )
        return route

    def _unknown(self, model: str, *, ambiguous: bool) -> ApiError:
        why = "is served by several providers; name one as provider/model" if ambiguous else "is not known"
        return ApiError(
            404,
            f"model {model!r} {why}. Known: {', '.join(self.known_models()[:20])}",
            param="model",
            code="model_not_found",
        )

    def _models_index(self) -> dict[str, list[str]]:
        index: dict[str, list[str]] = {}
        for name, provider in self._providers.items():
            for model in provider.models():
                index.setdefault(model, []).append(name)
        return index
