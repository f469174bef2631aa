"""The overview: a tile per health signal of the fleet, green, amber or red, naming what opens behind it.

Every threshold that colours a tile is in `THRESHOLDS`; the help screen states them from there.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

import duckdb

from console.policy import Evaluation
from console.store import queries
from console.tui import humanize
from console.tui.readmodel.fleet import BudgetBurn, ledger_burn

Level = Literal["green", "amber", "red"]
LEVELS: tuple[Level, ...] = ("green", "amber", "red")


@dataclass(frozen=True)
class Thresholds:
    """Where a tile turns amber and red; a share is of a cap, a limit or an SLO."""

    spend_amber: float = 0.8  # of any cap, spent and held
    spend_red: float = 1.0
    refused_amber: float = 0.05  # blocked and over-budget calls, of the last hour's requests
    refused_red: float = 0.20
    error_amber: float = 0.02  # errors of the calls sent to a provider, last hour
    error_red: float = 0.05
    slo_amber: float = 0.8  # a route's p95 over the last hour, of its latency_slo_ms
    slo_red: float = 1.0
    drift_hours: float = 24.0  # a drift alert raised this recently is open
    drift_red: str = "critical"  # an open alert of this severity is red; any other is amber
    held_red_s: float = 300.0  # a tool call held this long for approval is red; any held is amber
    coverage_amber: float = 0.5  # judged share of answered calls, of the sample rate, last day
    coverage_min_calls: int = 20  # none of at least this many judged: red
    key_amber: float = 0.8  # of a key's rate limit (last minute) or spend cap
    key_red: float = 1.0
    # Stopped routes are amber (an operator chose it); breakers: half open amber, open red.

    def lines(self) -> list[str]:
        """The rules in words, for the help screen."""
        pct = humanize.percent
        return [
            f"spend: amber from {pct(self.spend_amber, 0)} of any cap, red from {pct(self.spend_red, 0)}",
            f"requests: amber when {pct(self.refused_amber, 0)} of the last hour's were refused "
            f"(blocked, over budget), red from {pct(self.refused_red, 0)}",
            f"error rate (last hour): amber from {pct(self.error_amber, 0)}, "
            f"red from {pct(self.error_red, 0)}",
            f"p95: amber from {pct(self.slo_amber, 0)} of a route's latency SLO, red above it",
            f"drift: amber with an alert of the last {self.drift_hours:g} h, red if it is {self.drift_red}",
            f"approvals: amber with a held tool call, red once one waits {self.held_red_s / 60:g} min",
            "stopped routes: amber; breakers: amber half open, red open",
            f"judge coverage: amber below {pct(self.coverage_amber, 0)} of the sample rate (last day), "
            f"red when none of {self.coverage_min_calls}+ calls is judged",
            f"keys: amber from {pct(self.key_amber, 0)} of a rate limit or cap, "
            f"red from {pct(self.key_red, 0)}",
        ]


THRESHOLDS = Thresholds()


def level_of(share: float | None, amber: float, red: float) -> Level:
    if share is None or share < amber:
        return "green"
    return "red" if share >= red else "amber"


def worst(levels: Iterable[Level]) -> Level:
    return max(levels, key=LEVELS.index, default="green")


@dataclass(frozen=True)
class Opens:
    """What Enter on a tile shows: a pane, and for Traffic the filter, as typed."""

    pane: str
    filter: str | None = None


@dataclass(frozen=True)
class Tile:
    name: str  # its id: spend_day, errors, …
    title: str
    value: str
    detail: str
    level: Level
    opens: Opens


@dataclass(frozen=True)
class Oversight:
    """What the Engine holds in memory: calls held for approval, stopped routes."""

    held_since: list[datetime] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    gateway: bool = False


# -- spend ---------------------------------------------------------------------------


def spend_tiles(
    rows: Sequence[Mapping[str, Any]], caps: list[BudgetBurn], limits: Thresholds = THRESHOLDS
) -> list[Tile]:
    """Today's and this month's spend (every route) against every cap of that period."""
    tiles = []
    for period, name, title in (
        ("day", "spend_day", "Spend today"),
        ("month", "spend_month", "Spend this month"),
    ):
        total = sum(
            float(r["spend_usd"] or 0)
            for r in rows
            if r["period"] == period and r["scope"].startswith("route:")
        )
        capped = [c for c in caps if c.period == period and c.cap_usd]
        if not capped:
            tiles.append(Tile(name, title, humanize.usd(total), "no cap", "green", Opens("cost")))
            continue
        top = max(capped, key=lambda c: (c.spend_usd + c.held_usd) / (c.cap_usd or 1))
        share = (top.spend_usd + top.held_usd) / (top.cap_usd or 1)
        detail = f"{top.scope} {top.name}: {humanize.percent(share, 0)} of {humanize.usd(top.cap_usd)}"
        level = level_of(share, limits.spend_amber, limits.spend_red)
        tiles.append(
            Tile(name, f"{title} · {len(capped)} caps", humanize.usd(total), detail, level, Opens("cost"))
        )
    return tiles


def store_caps(
    rows: Sequence[Mapping[str, Any]], policy: Any, keys: Sequence[Mapping[str, Any]]
) -> list[BudgetBurn]:
    """The caps of the policy (routes, workflows) and of the keys, with the store's spend (no gateway)."""
    spent = {(r["scope"], r["period"]): float(r["spend_usd"] or 0) for r in rows}
    found: list[tuple[str, str, str, float | None]] = []
    for route in getattr(policy, "routes", None) or []:
        found.append(("route", route.intent, "day", route.max_budget_daily))
    for name, workflow in (getattr(policy, "workflows", None) or {}).items():
        found.append(("workflow", name, "day", workflow.max_budget_daily))
    for key in keys:
        found.append(("key", key["key_id"], "day", key["daily_cap"]))
        found.append(("key", key["key_id"], "month", key["monthly_cap"]))
    return [
        BudgetBurn(scope, name, spent.get((f"{scope}:{name}", period), 0.0), cap, period)
        for scope, name, period, cap in found
        if cap
    ]


# -- traffic -------------------------------------------------------------------------


def request_tiles(errors: Sequence[Mapping[str, Any]], limits: Thresholds = THRESHOLDS) -> list[Tile]:
    calls = sum(int(r["calls"] or 0) for r in errors)
    attempted = sum(int(r["attempted"] or 0) for r in errors)
    failed = sum(int(r["errors"] or 0) for r in errors)
    refused = sum(int(r["blocked"] or 0) + int(r["over_budget"] or 0) for r in errors)
    refused_share = refused / calls if calls else None
    rate = failed / attempted if attempted else None
    requests = Tile(
        "requests",
        "Requests · 1 h",
        humanize.count(calls),
        f"{calls / 60:.1f}/min · {humanize.count(refused)} refused",
        level_of(refused_share, limits.refused_amber, limits.refused_red),
        Opens("traffic", "since:1h"),
    )
    detail = f"{humanize.count(failed)} of {humanize.count(attempted)} sent" if attempted else "none sent"
    error_rate = Tile(
        "errors",
        "Error rate · 1 h",
        humanize.percent(rate) if rate is not None else humanize.DASH,
        detail,
        level_of(rate, limits.error_amber, limits.error_red),
        Opens("traffic", "status:error since:1h"),
    )
    return [requests, error_rate]


def latency_tile(
    latencies: Sequence[Mapping[str, Any]], policy: Any, limits: Thresholds = THRESHOLDS
) -> Tile:
    """The route whose last-hour p95 is the largest share of its SLO."""
    slos = {r.intent: r.latency_slo_ms for r in getattr(policy, "routes", None) or [] if r.latency_slo_ms}
    measured = [
        (float(row["latency_p95_ms"]) / slos[row["route"]], row)
        for row in latencies
        if row["route"] in slos and row["latency_p95_ms"] is not None
    ]
    if not measured:
        slowest = max(latencies, key=lambda r: r["latency_p95_ms"] or 0, default=None)
        value = humanize.duration_ms(slowest["latency_p95_ms"]) if slowest else humanize.DASH
        detail = "no SLO set" if not slos else "no calls under an SLO"
        route = slowest["route"] if slowest else None
        return Tile("latency", "p95 vs SLO · 1 h", value, detail, "green", _route_filter(route))
    share, row = max(measured, key=lambda item: item[0])
    over = sum(s >= limits.slo_amber for s, _ in measured)
    slo = humanize.duration_ms(slos[row["route"]])
    detail = f"{row['route']}: SLO {slo} · {over} of {len(measured)} near or over"
    return Tile(
        "latency",
        "p95 vs SLO · 1 h",
        humanize.duration_ms(row["latency_p95_ms"]),
        detail,
        level_of(share, limits.slo_amber, limits.slo_red),
        _route_filter(row["route"]),
    )


def _route_filter(route: str | None) -> Opens:
    return Opens("traffic", f"route:{route} since:1h" if route else "since:1h")


# -- oversight, drift, breakers, judge, keys --------------------------------------------


def drift_tile(alerts: Sequence[Mapping[str, Any]], now: datetime, limits: Thresholds = THRESHOLDS) -> Tile:
    since = now - timedelta(hours=limits.drift_hours)
    open_ = [a for a in alerts if a["ts"] is not None and a["ts"] >= since]
    red = [a for a in open_ if a["severity"] == limits.drift_red]
    level: Level = "red" if red else "amber" if open_ else "green"
    shown = (red or open_)[:1]
    detail = (
        f"{shown[0]['workflow_id']}: {shown[0]['metric']}" if shown else f"none in {limits.drift_hours:g} h"
    )
    return Tile("drift", "Drift alerts", humanize.count(len(open_)), detail, level, Opens("drift"))


def approvals_tile(oversight: Oversight, now: datetime, limits: Thresholds = THRESHOLDS) -> Tile:
    held = oversight.held_since
    if not oversight.gateway:
        return Tile("approvals", "Approvals held", humanize.DASH, "gateway off", "green", Opens("audit"))
    oldest = (now - min(held)).total_seconds() if held else None
    level: Level = "green" if oldest is None else "red" if oldest >= limits.held_red_s else "amber"
    detail = f"oldest waits {oldest / 60:.0f} min" if oldest is not None else "nothing waits"
    return Tile("approvals", "Approvals held", humanize.count(len(held)), detail, level, Opens("audit"))


def stops_tile(oversight: Oversight) -> Tile:
    stopped = sorted(oversight.stopped)
    detail = ", ".join(stopped) if stopped else "every route serves"
    level: Level = "amber" if stopped else "green"
    return Tile("stops", "Stopped routes", humanize.count(len(stopped)), detail, level, Opens("audit"))


def breakers_tile(health: Mapping[str, Any] | None) -> Tile:
    if not health:
        return Tile("breakers", "Breakers", humanize.DASH, "gateway off", "green", Opens("fleet"))
    states: Mapping[str, str] = health.get("breakers") or {}
    opened = sorted(t for t, s in states.items() if s == "open")
    half = sorted(t for t, s in states.items() if s == "half_open")
    level: Level = "red" if opened else "amber" if half else "green"
    named = opened or half
    detail = (
        f"open: {', '.join(opened)}" if opened else f"half open: {', '.join(half)}" if half else "all closed"
    )
    value = f"{len(states) - len(named)}/{len(states)} closed" if states else "none yet"
    return Tile(
        "breakers",
        "Breakers",
        value,
        detail if named or states else "no target called yet",
        level,
        Opens("fleet"),
    )


def coverage_tile(rows: Sequence[Mapping[str, Any]], policy: Any, limits: Thresholds = THRESHOLDS) -> Tile:
    config: Evaluation = getattr(policy, "eval", None) or Evaluation()
    judged_envs = set(config.environments)
    answered = sum(int(r["answered"]) for r in rows if r["environment"] in judged_envs)
    judged = sum(int(r["judged"]) for r in rows if r["environment"] in judged_envs)
    envs = ", ".join(sorted(judged_envs))
    if not answered:
        return Tile("judge", "Judged · 1 day", humanize.DASH, f"no {envs} calls", "green", Opens("drift"))
    share = judged / answered
    expected = config.sample_rate
    level: Level = "green"
    if judged == 0 and answered >= limits.coverage_min_calls and expected > 0:
        level = "red"
    elif expected > 0 and share < limits.coverage_amber * expected:
        level = "amber"
    rate = humanize.percent(expected, 0)
    detail = f"{humanize.count(judged)}/{humanize.count(answered)} {envs} · rate {rate}"
    return Tile("judge", "Judged · 1 day", humanize.percent(share), detail, level, Opens("drift"))


def keys_tile(
    keys: Sequence[Mapping[str, Any]],
    spend: Sequence[Mapping[str, Any]],
    policy: Any,
    limits: Thresholds = THRESHOLDS,
) -> Tile:
    """The key nearest to one of its limits: requests or tokens per minute, daily or monthly cap."""
    defaults = getattr(getattr(policy, "rate_limits", None), "per_key", None)
    spent = {(r["scope"], r["period"]): float(r["spend_usd"] or 0) for r in spend}
    nearest: list[tuple[float, str, str]] = []
    for key in keys:
        scope = f"key:{key['key_id']}"
        for used, limit, what in (
            (
                key["requests"],
                key["requests_per_minute"] or getattr(defaults, "requests_per_minute", None),
                "req/min",
            ),
            (
                key["tokens"],
                key["tokens_per_minute"] or getattr(defaults, "tokens_per_minute", None),
                "tok/min",
            ),
            (spent.get((scope, "day"), 0.0), key["daily_cap"], "daily cap"),
            (spent.get((scope, "month"), 0.0), key["monthly_cap"], "monthly cap"),
        ):
            if limit:
                nearest.append((float(used) / float(limit), str(key["key_id"]), f"{key['name']}: {what}"))
    if not nearest:
        none = "no key has a limit" if keys else "no keys"
        return Tile("keys", "Keys near limits", humanize.DASH, none, "green", Opens("traffic", ""))
    near = sum(share >= limits.key_amber for share, _, _ in nearest)
    share, key_id, what = max(nearest)
    detail = f"{what} {humanize.percent(share, 0)}"
    level = level_of(share, limits.key_amber, limits.key_red)
    return Tile(
        "keys",
        "Keys near limits",
        humanize.count(near),
        detail,
        level,
        Opens("traffic", f"key:{key_id} since:1d"),
    )


# -- the whole overview -----------------------------------------------------------------


def snapshot(
    cur: duckdb.DuckDBPyConnection,
    now: datetime,
    health: Mapping[str, Any] | None,
    policy: Any,
    oversight: Oversight,
) -> list[Tile]:
    hour = {"from": now - timedelta(hours=1), "to": now}
    spend = queries.run(cur, "spend_to_date", {"as_of": now}).to_pylist()
    keys = queries.run(cur, "key_limits_usage", {"to": now}).to_pylist()
    caps = ledger_burn(health)
    if caps is None:
        caps = store_caps(spend, policy, keys)
    return [
        *spend_tiles(spend, caps),
        *request_tiles(queries.run(cur, "error_rate", hour).to_pylist()),
        latency_tile(queries.run(cur, "latency_slo", hour).to_pylist(), policy),
        drift_tile(queries.run(cur, "drift_alerts", {"to": now, "limit": 200}).to_pylist(), now),
        approvals_tile(oversight, now),
        stops_tile(oversight),
        breakers_tile(health),
        coverage_tile(
            queries.run(cur, "judge_coverage", {"from": now - timedelta(days=1), "to": now}).to_pylist(),
            policy,
        ),
        keys_tile(keys, spend, policy),
    ]
