"""The fleet: providers and models with breaker state, latency, errors, load and budget burn."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import duckdb

from console.store import queries
from console.tui.readmodel import charts
from console.tui.readmodel.charts import FleetCharts

WINDOW_MINUTES = 60.0
MCP_WINDOW_DAYS = 30


@dataclass(frozen=True, slots=True)
class ModelLoad:
    provider: str
    model: str | None
    calls: int
    rps: float
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    errors: int
    error_rate: float | None
    tokens_per_second: float | None


@dataclass(frozen=True, slots=True)
class ProviderState:
    name: str
    kind: str
    device: str | None
    models: list[str]
    breakers: dict[str, str]
    tokens_per_second: float | None
    busy: bool | None
    queued: int | None
    # The local model's hardware, as its provider describes it (None and empty for remote ones).
    layers: int | None = None  # llama.cpp's count, the output layer included; None until loaded
    layers_offloaded: int | None = None
    offload_devices: list[str] = field(default_factory=list)  # where the offloaded layers are
    backends: list[str] = field(default_factory=list)  # the llama.cpp build's (CPU, CUDA, Metal, …)
    local: bool = False


@dataclass(frozen=True, slots=True)
class ReplicaState:
    """A replica of the cluster the gateway belongs to, as its heartbeat says."""

    name: str
    url: str | None
    alive: bool
    seen_s_ago: float
    this: bool  # the replica the console's gateway is


@dataclass(frozen=True, slots=True)
class BudgetBurn:
    scope: str  # "route", "key" or "workflow"
    name: str
    spend_usd: float
    cap_usd: float | None
    period: str = "day"
    held_usd: float = 0.0

    @property
    def share(self) -> float | None:
        return self.spend_usd / self.cap_usd if self.cap_usd else None


@dataclass(frozen=True, slots=True)
class DeploymentState:
    """One deployment of a balanced route's primary, as the gateway's balancer sees it now."""

    route: str
    deployment: str
    strategy: str
    weight: float
    in_flight: int
    calls_last_minute: int
    share: float | None  # of the route's calls in the last minute
    cooling_s: float  # no traffic for this long (a 429, or the upstream said it has nothing left)
    requests_left: str | None  # what the upstream last reported, e.g. "480/500"
    tokens_left: str | None


@dataclass(frozen=True, slots=True)
class McpServerState:
    """An MCP server behind /mcp: live state from the gateway, calls from the store (30 days)."""

    name: str
    transport: str
    remote: bool
    status: str  # up, starting, restarting, breaker open, stopped, not running
    tools: list[str]
    calls: int
    refused: int
    failed: int


@dataclass(frozen=True)
class FleetView:
    providers: list[ProviderState]
    models: list[ModelLoad]
    budgets: list[BudgetBurn] = field(default_factory=list)
    window_minutes: float = WINDOW_MINUTES
    deployments: list[DeploymentState] = field(default_factory=list)
    mcp_servers: list[McpServerState] = field(default_factory=list)
    replicas: list[ReplicaState] = field(default_factory=list)  # empty on one box
    cluster_outage: str | None = None  # why the cluster's PostgreSQL cannot be reached, if it cannot
    charts: FleetCharts | None = None  # tokens/s and calls in flight per provider, the last hour


def deployments_from_health(health: Mapping[str, Any] | None) -> list[DeploymentState]:
    """What `Engine.health()` says of each balanced route's deployments."""
    found = []
    for row in (health or {}).get("deployments") or []:
        limits = row.get("limits") or {}
        found.append(
            DeploymentState(
                route=str(row["route"]),
                deployment=str(row["deployment"]),
                strategy=str(row["strategy"]),
                weight=float(row["weight"]),
                in_flight=int(row["in_flight"]),
                calls_last_minute=int(row["calls_last_minute"]),
                share=row.get("share"),
                cooling_s=float(row.get("cooling_s") or 0.0),
                requests_left=_left(limits.get("requests")),
                tokens_left=_left(limits.get("tokens")),
            )
        )
    return found


def _left(budget: Mapping[str, Any] | None) -> str | None:
    if not budget:
        return None
    limit = budget.get("limit")
    return f"{budget['remaining']:,}/{limit:,}" if limit else f"{budget['remaining']:,}"


def providers_from_health(health: Mapping[str, Any] | None) -> list[ProviderState]:
    """What `Engine.health()` says of each provider, with the breakers of its targets."""
    if not health:
        return []
    breakers: Mapping[str, str] = health.get("breakers", {}) or {}
    states = []
    for name, described in sorted((health.get("providers") or {}).items()):
        own = {target: state for target, state in breakers.items() if target.split("/", 1)[0] == name}
        states.append(
            ProviderState(
                name=name,
                kind=str(described.get("kind", "?")),
                device=described.get("device"),
                models=[str(model) for model in described.get("models") or []],
                breakers=own,
                tokens_per_second=described.get("tokens_per_second"),
                busy=described.get("busy"),
                queued=described.get("queued"),
                layers=described.get("layers"),
                layers_offloaded=described.get("layers_offloaded"),
                offload_devices=[str(device) for device in described.get("offload_devices") or []],
                backends=[str(backend) for backend in described.get("backends") or []],
                local=described.get("kind") == "local",
            )
        )
    return states


def model_load(
    cur: duckdb.DuckDBPyConnection, now: datetime, minutes: float = WINDOW_MINUTES
) -> list[ModelLoad]:
    table = queries.run(cur, "fleet_models", {"to": now, "minutes": minutes})
    return [ModelLoad(**row) for row in table.to_pylist()]


def budget_burn(
    cur: duckdb.DuckDBPyConnection, now: datetime, route_caps: Mapping[str, float | None]
) -> list[BudgetBurn]:
    """Today's spend (UTC) per route and per key; routes carry their daily cap when the policy sets one."""
    day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    rows = queries.run(
        cur, "budget_burn", {"from": day_start, "to": day_start + timedelta(days=1)}
    ).to_pylist()
    by_route: dict[str, float] = {}
    by_key: dict[str, float] = {}
    for row in rows:
        spend = float(row["spend_usd"] or 0)
        by_route[row["route"] or "–"] = by_route.get(row["route"] or "–", 0.0) + spend
        by_key[row["key_id"] or "(no key)"] = by_key.get(row["key_id"] or "(no key)", 0.0) + spend
    burns = [
        BudgetBurn("route", route, by_route.get(route, 0.0), cap)
        for route, cap in sorted(route_caps.items())
        if cap is not None
    ]
    capped = {burn.name for burn in burns}
    burns += [BudgetBurn("route", r, s, None) for r, s in sorted(by_route.items()) if r not in capped]
    burns += [BudgetBurn("key", k, s, None) for k, s in sorted(by_key.items())]
    return burns


def ledger_burn(health: Mapping[str, Any] | None) -> list[BudgetBurn] | None:
    """The gateway ledger's caps with spend and holds (None when the gateway is not running)."""
    if not health or "budgets" not in health:
        return None
    burns = []
    for budget in health["budgets"] or []:
        scope, _, name = str(budget.get("scope", "")).partition(":")
        burns.append(
            BudgetBurn(
                scope=scope,
                name=name,
                spend_usd=float(budget.get("spent_usd") or 0),
                cap_usd=budget.get("cap_usd"),
                period=str(budget.get("period", "day")),
                held_usd=float(budget.get("held_usd") or 0),
            )
        )
    return burns


def replicas_from_health(health: Mapping[str, Any] | None) -> list[ReplicaState]:
    """The cluster's replicas, from `Engine.health()` (none on one box)."""
    cluster = (health or {}).get("cluster") or {}
    this = cluster.get("replica")
    return [
        ReplicaState(
            name=str(found.get("replica")),
            url=found.get("url"),
            alive=bool(found.get("alive")),
            seen_s_ago=float(found.get("seen_s_ago") or 0.0),
            this=found.get("replica") == this,
        )
        for found in cluster.get("replicas") or []
    ]


def route_caps(policy: Any) -> dict[str, float | None]:
    """Daily caps per route from a policy (None when there is none)."""
    routes = getattr(policy, "routes", None) or []
    return {route.intent: route.max_budget_daily for route in routes}


def mcp_servers(
    cur: duckdb.DuckDBPyConnection, now: datetime, health: Mapping[str, Any] | None, policy: Any
) -> list[McpServerState]:
    """The policy's MCP servers, as the running gateway reports them, with their recorded calls."""
    configured = getattr(policy, "mcp_servers", None) or {}
    if not configured:
        return []
    live: Mapping[str, Any] = (health or {}).get("mcp") or {}
    recorded: dict[str, list[int]] = {}
    since = now - timedelta(days=MCP_WINDOW_DAYS)
    for row in queries.run(cur, "mcp_tool_calls", {"since": since}).to_pylist():
        counts = recorded.setdefault(row["server"], [0, 0, 0])
        for index, column in enumerate(("calls", "refused", "failed")):
            counts[index] += int(row[column])
    states = []
    for name, config in configured.items():
        found = live.get(name) or {}
        calls, refused, failed = recorded.get(name, [0, 0, 0])
        states.append(
            McpServerState(
                name=name,
                transport=config.transport,
                remote=config.remote,
                status=str(found.get("status", "not running")),
                tools=list(found.get("tools") or []),
                calls=calls,
                refused=refused,
                failed=failed,
            )
        )
    return states


def snapshot(
    cur: duckdb.DuckDBPyConnection, now: datetime, health: Mapping[str, Any] | None, policy: Any
) -> FleetView:
    ledger = ledger_burn(health)
    return FleetView(
        providers=providers_from_health(health),
        models=model_load(cur, now),
        budgets=ledger if ledger else budget_burn(cur, now, route_caps(policy)),
        deployments=deployments_from_health(health),
        mcp_servers=mcp_servers(cur, now, health, policy),
        replicas=replicas_from_health(health),
        cluster_outage=((health or {}).get("cluster") or {}).get("outage"),
        charts=charts.fleet_charts(charts.provider_minutes(cur, now), now),
    )
