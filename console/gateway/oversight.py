"""Human oversight: stopping and resuming routes, overriding verdicts, and what the gateway audits on its own.

A stop takes effect on the next request (the set is read on the request path, changed
from the admin API's worker thread), is an audit entry, and survives a restart: the
Engine loads the routes still stopped from the audit log at start.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from console.clock import new_request_id, utc_now
from console.errors import Invalid
from console.gateway.openai_api import ApiError
from console.store.audit import AuditEvent
from console.store.recorder import Recorder
from console.store.trace import Eval

VERDICTS = ("correct", "partial", "incorrect")
COMPONENTS = ("retrieval", "tool_selection", "policy_compliance", "answer")
FALLBACK_AUDIT_INTERVAL_S = 60.0


@dataclass(frozen=True, slots=True)
class Stop:
    actor: str
    reason: str
    at: datetime


class RouteStops:
    def __init__(self, stopped: Mapping[str, Stop] | None = None) -> None:
        self._stopped = dict(stopped or {})

    def check(self, route: str | None) -> None:
        """Raise the 503 of a stopped route."""
        stop = self._stopped.get(route) if route else None
        if stop is not None:
            raise ApiError(
                503,
                f"route {route!r} was stopped by {stop.actor} at {stop.at:%Y-%m-%d %H:%M:%S} UTC: "
                f"{stop.reason}. An operator resumes it with `fleetdeck routes resume {route}`",
                type_="api_error",
                code="route_stopped",
            )

    def stop(self, route: str, stop: Stop) -> None:
        self._stopped = {**self._stopped, route: stop}

    def resume(self, route: str) -> bool:
        if route not in self._stopped:
            return False
        self._stopped = {name: stop for name, stop in self._stopped.items() if name != route}
        return True

    def stopped(self) -> dict[str, Stop]:
        return dict(self._stopped)

    def replace(self, stopped: Mapping[str, Stop]) -> None:
        """The stops in force cluster-wide, as the cluster's sync job read them."""
        if stopped != self._stopped:
            self._stopped = dict(stopped)


class StopMirror(Protocol):
    """Where else a stop goes: the cluster's PostgreSQL, read by every replica. Each raises a
    DomainError when it cannot, before the stop changes here."""

    def route_stopped(self, route: str, stop: Stop) -> None: ...

    def route_resumed(self, route: str) -> None: ...


class Oversight:
    """Stops, resumes and overrides: each one changes the live state and writes one audit entry."""

    def __init__(self, recorder: Recorder, stops: RouteStops, known_routes: set[str]) -> None:
        self._recorder, self.stops, self.known_routes = recorder, stops, known_routes
        self.mirror: StopMirror | None = None

    def stop_route(self, route: str, reason: str, actor: str) -> None:
        self._check_route(route)
        if not reason.strip():
            raise ValueError("say why the route is stopped (--reason)")
        stop = Stop(actor, reason, utc_now())
        if self.mirror is not None:
            self.mirror.route_stopped(route, stop)
        self.stops.stop(route, stop)
        self._audit(actor, "route.stopped", route, {"reason": reason})

    def resume_route(self, route: str, actor: str, reason: str = "") -> None:
        self._check_route(route)
        if route not in self.stops.stopped():
            raise ValueError(f"route {route!r} is not stopped")
        if self.mirror is not None:
            self.mirror.route_resumed(route)
        self.stops.resume(route)
        self._audit(actor, "route.resumed", route, {"reason": reason})

    def override(
        self, request_id: str, verdict: str, reason: str, actor: str, component: str = "answer"
    ) -> str:
        """A human verdict on a call, over the judge's; returns the eval id."""
        if verdict not in VERDICTS:
            raise ValueError(f"verdict {verdict!r}: use one of {', '.join(VERDICTS)}")
        if component not in COMPONENTS:
            raise ValueError(f"component {component!r}: use one of {', '.join(COMPONENTS)}")
        if not reason.strip():
            raise ValueError("say why (--reason): an override without a reason cannot be audited")
        eval_id = new_request_id()
        self._recorder.record_eval(
            Eval(
                eval_id=eval_id,
                request_id=request_id,
                evaluator=f"human:{actor}",
                rubric="override",
                component=component,
                verdict=verdict,
                rationale=reason,
            )
        )
        payload = {"verdict": verdict, "component": component, "reason": reason, "eval_id": eval_id}
        self._audit(actor, "override", request_id, payload)
        return eval_id

    def answer(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """The admin API's `/_admin/oversight`: `{"action": "stop" | "resume" | "override" | "list", …}`."""
        action, actor = request.get("action"), str(request.get("actor") or "admin-api")
        reason = str(request.get("reason") or "")
        try:
            if action == "stop":
                self.stop_route(str(request.get("route")), reason, actor)
            elif action == "resume":
                self.resume_route(str(request.get("route")), actor, reason)
            elif action == "override":
                eval_id = self.override(
                    str(request.get("request_id")),
                    str(request.get("verdict")),
                    reason,
                    actor,
                    str(request.get("component") or "answer"),
                )
                return {"eval_id": eval_id}
            elif action != "list":
                raise ValueError("send {'action': 'stop' | 'resume' | 'override' | 'list', …}")
        except ValueError as exc:
            raise Invalid(str(exc), code="oversight_refused") from None
        stopped = self.stops.stopped()
        return {
            "stopped": {
                route: {"actor": s.actor, "reason": s.reason, "at": s.at.isoformat()}
                for route, s in stopped.items()
            }
        }

    def _check_route(self, route: str) -> None:
        if self.known_routes and route not in self.known_routes:
            raise ValueError(f"no route {route!r}; routes: {', '.join(sorted(self.known_routes))}")

    def _audit(self, actor: str, action: str, subject: str, payload: dict[str, Any]) -> None:
        self._recorder.record_audit(
            AuditEvent(actor=actor, actor_kind="human", action=action, subject=subject, payload=payload)
        )


class FallbackNotes:
    """Audits fallbacks for an outage: the first at once, then one a minute per route with the count.

    Every fallback is on its trace (reason provider-outage-fallback); the audit log
    gets the decision without one entry per request of a storm.
    """

    def __init__(self, recorder: Recorder, interval_s: float = FALLBACK_AUDIT_INTERVAL_S) -> None:
        self._recorder, self._interval_s = recorder, interval_s
        self._pending: dict[tuple[str, str, str], int] = {}
        self._last: dict[tuple[str, str, str], float] = {}
        self._lock = threading.Lock()

    def fell_back(self, route: str | None, failed: str, served: str, request_id: str) -> None:
        key = (route or "-", failed, served)
        now = time.monotonic()
        with self._lock:
            self._pending[key] = self._pending.get(key, 0) + 1
            if now - self._last.get(key, -self._interval_s) < self._interval_s:
                return
            count, self._pending[key], self._last[key] = self._pending[key], 0, now
        payload = {"from": failed, "to": served, "fallbacks": count, "request_id": request_id}
        self._recorder.record_audit(
            AuditEvent(
                actor="gateway", actor_kind="system", action="route.fallback", subject=key[0], payload=payload
            )
        )
