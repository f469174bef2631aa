"""Route choice: from a request's `model` (and intent) to an ordered plan of targets.

`model` may be `route:<intent>`, a concrete `provider/model`, a bare intent or a bare
model name that exactly one provider serves; with no model, the request's intent
header picks the route, else the policy's default route.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from console.gateway.executor import Plan, Target
from console.gateway.openai_api import ApiError
from console.policy import Policy, Route
from console.providers.base import Provider

ROUTE_PREFIX = "route:"


@dataclass(frozen=True, slots=True)
class Decision:
    plan: Plan
    route: str | None  # the route's intent; None for a concrete model outside any route
    tier: str | None
    reason_code: str


class Router:
    def __init__(self, policy: Policy, providers: Mapping[str, Provider]) -> None:
        self._policy = policy
        self._providers = providers
        self._routes = {route.intent: route for route in policy.routes}
        self._by_model = self._models_index()

    def decide(self, model: str | None, intent: str | None) -> Decision:
        if not model:
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

    def known_models(self) -> list[str]:
        """What GET /v1/models lists: every route and every provider/model."""
        served = [f"{provider}/{model}" for model, owners in self._by_model.items() for provider in owners]
        return [f"{ROUTE_PREFIX}{intent}" for intent in self._routes] + sorted(served)

    def _route_decision(self, route: Route) -> Decision:
        targets = tuple(Target(ref.provider, ref.model) for ref in [route.primary, *route.fallback])
        return Decision(Plan(targets, route.timeouts, route.max_retries), route.intent, route.tier, "primary")

    def _direct(self, target: Target, intent: str | None) -> Decision:
        known = self._providers[target.provider].models()
        if known and target.model not in known:
            raise self._unknown(target.name, ambiguous=False)
        route = self._routes.get(intent) if intent else None
        if route is None:
            return Decision(Plan((target,)), None, None, "primary")
        return Decision(
            Plan((target,), route.timeouts, route.max_retries), route.intent, route.tier, "primary"
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
