"""Cost per outcome per workflow with its trend, spend by route, small-model share, cache savings."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import duckdb

from console.store import queries

WINDOW_DAYS = 30
TREND_DAYS = 14


@dataclass(frozen=True, slots=True)
class WorkflowCost:
    workflow_id: str | None
    tasks: int
    resolved_tasks: int
    total_cost_usd: float
    cost_per_outcome_usd: float | None
    trend: list[float]  # cost per outcome per day, oldest first; 0 on a day with none


@dataclass(frozen=True, slots=True)
class RouteSpend:
    route: str | None
    calls: int
    cost_usd: float
    daily: list[float]  # oldest first, TREND_DAYS long


@dataclass(frozen=True)
class CostView:
    window_days: int
    workflows: list[WorkflowCost]
    routes: list[RouteSpend]
    total_spend_usd: float
    small_or_local_share: float | None
    cache_hits: int
    cache_saved_usd: float | None
    days: list[date] = field(default_factory=list)  # the trend's UTC days, oldest first


def snapshot(cur: duckdb.DuckDBPyConnection, now: datetime) -> CostView:
    window: dict[str, object] = {"from": now - timedelta(days=WINDOW_DAYS), "to": now}
    routes = _routes(cur, now, window)
    hits, saved = _cache(cur, window)
    return CostView(
        window_days=WINDOW_DAYS,
        workflows=_workflows(cur, now, window),
        routes=routes,
        total_spend_usd=sum(route.cost_usd for route in routes),
        small_or_local_share=_small_share(cur, window),
        cache_hits=hits,
        cache_saved_usd=saved,
        days=_days(now),
    )


def _days(now: datetime) -> list[date]:
    today = now.date()
    return [today - timedelta(days=back) for back in range(TREND_DAYS - 1, -1, -1)]


def _workflows(
    cur: duckdb.DuckDBPyConnection, now: datetime, window: dict[str, object]
) -> list[WorkflowCost]:
    trend_window: dict[str, object] = {"from": now - timedelta(days=TREND_DAYS), "to": now}
    daily: dict[str | None, dict[date, float]] = {}
    for row in queries.run(cur, "cost_per_outcome_trend", trend_window).to_pylist():
        daily.setdefault(row["workflow_id"], {})[row["day"]] = row["cost_per_outcome_usd"] or 0.0
    days = _days(now)
    found = []
    for row in queries.run(cur, "cost_per_outcome", window).to_pylist():
        per_day = daily.get(row["workflow_id"], {})
        found.append(
            WorkflowCost(
                workflow_id=row["workflow_id"],
                tasks=row["tasks"],
                resolved_tasks=row["resolved_tasks"],
                total_cost_usd=float(row["total_cost_usd"] or 0),
                cost_per_outcome_usd=row["cost_per_outcome_usd"],
                trend=[per_day.get(day, 0.0) for day in days],
            )
        )
    return sorted(found, key=lambda w: -(w.total_cost_usd))


def _routes(cur: duckdb.DuckDBPyConnection, now: datetime, window: dict[str, object]) -> list[RouteSpend]:
    days = _days(now)
    totals: dict[str | None, list[float]] = {}
    daily: dict[str | None, dict[date, float]] = {}
    for row in queries.run(cur, "spend_by_route_daily", window).to_pylist():
        calls_cost = totals.setdefault(row["route"], [0, 0.0])
        calls_cost[0] += row["calls"]
        calls_cost[1] += float(row["cost_usd"] or 0)
        daily.setdefault(row["route"], {})[row["day"]] = float(row["cost_usd"] or 0)
    spends = [
        RouteSpend(route, int(calls), cost, [daily[route].get(day, 0.0) for day in days])
        for route, (calls, cost) in totals.items()
    ]
    return sorted(spends, key=lambda r: -r.cost_usd)


def _small_share(cur: duckdb.DuckDBPyConnection, window: dict[str, object]) -> float | None:
    for row in queries.run(cur, "routing_share", window).to_pylist():
        if row["scope"] == "overall":
            share = row["small_or_local_share"]
            return float(share) if share is not None else None
    return None


def _cache(cur: duckdb.DuckDBPyConnection, window: dict[str, object]) -> tuple[int, float | None]:
    rows = queries.run(cur, "cache_hit_rate", window).to_pylist()
    hits = sum(int(row["hits"] or 0) for row in rows)
    saved = [float(row["saved_usd_estimate"]) for row in rows if row["saved_usd_estimate"] is not None]
    return hits, (sum(saved) if saved else None)
