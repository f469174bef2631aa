"""The executive AI scorecard: every figure per workflow and overall, against the previous period.

Every number comes from a named query (queries/*.sql) run through one QueryRunner, so the
same code serves a store opened directly and one owned by a running instance. This module
only computes; console/reports/render_*.py turn a Scorecard into HTML, Markdown, JSON or CSV.
Targets and status rules live in console/reports/targets.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal

from console.policy import Policy
from console.reports import numbers as num
from console.reports import targets as tg
from console.reports.period import Window, utc_now
from console.reports.source import QueryRunner
from console.reports.targets import Status

OVERALL = "overall"
JUDGE_WORKFLOW = "fleetdeck-judge"
Row = dict[str, Any]
PeriodName = Literal["current", "previous"]


@dataclass(frozen=True)
class Figure:
    workflow: str
    figure: str
    value: float | None
    previous: float | None
    status: Status
    reading: str
    detail: Mapping[str, Any] = field(default_factory=dict)

    @property
    def target(self) -> tg.Target:
        return tg.BY_FIGURE[self.figure]


@dataclass(frozen=True)
class Incident:
    period: PeriodName
    seq: int
    ts: datetime
    kind: str
    severity: str
    subject: str
    actor: str
    detail: str | None
    workflows: tuple[str, ...]


@dataclass(frozen=True)
class BudgetLine:
    scope: str
    cap: str
    budget_usd: float
    spend_usd: float
    status: Status

    @property
    def used(self) -> float | None:
        return self.spend_usd / self.budget_usd if self.budget_usd > 0 else None


@dataclass(frozen=True)
class RouteLatency:
    route: str
    workflows: tuple[str, ...]
    calls: int
    p95_ms: float | None
    previous_p95_ms: float | None
    slo_ms: float
    status: Status


@dataclass(frozen=True)
class QualityPoint:
    workflow: str
    bucket_start: datetime
    judged: int
    correct: int
    partial: int
    incorrect: int


@dataclass(frozen=True)
class DailyPoint:
    day: date
    workflow: str
    calls: int
    spend_usd: float
    attempted: int
    errors: int


@dataclass(frozen=True)
class Scorecard:
    generated_at: datetime
    window: Window
    previous_window: Window
    workflows: tuple[str, ...]
    selected: tuple[str, ...] | None
    policy_source: str
    figures: tuple[Figure, ...]
    incidents: tuple[Incident, ...]
    budgets: tuple[BudgetLine, ...]
    routes: tuple[RouteLatency, ...]
    quality: tuple[QualityPoint, ...]
    daily: tuple[DailyPoint, ...]

    def figure(self, workflow: str, name: str) -> Figure:
        return next(f for f in self.figures if f.workflow == workflow and f.figure == name)

    def of(self, workflow: str) -> list[Figure]:
        return [f for f in self.figures if f.workflow == workflow]


@dataclass(frozen=True)
class Options:
    window: Window
    workflows: tuple[str, ...] | None = None
    policy: Policy | None = None
    policy_source: str = "no policy"
    slo_ms: Mapping[str, float] = field(default_factory=dict)
    default_slo_ms: float = tg.SLO_MS_DEFAULT


# --------------------------------------------------------------------------- fetching


@dataclass(frozen=True)
class PeriodData:
    """What the named queries say about one window."""

    window: Window
    traffic: list[Row]
    routes: list[Row]
    quality: list[Row]
    incidents: list[Row]
    policy: list[Row]
    completeness: list[Row]
    cost: list[Row]
    routing: list[Row]
    latency: list[Row]
    key_caps: list[Row]


def bucket_days(window: Window) -> int:
    return 1 if window.days <= 14 else 7


def fetch(run: QueryRunner, window: Window, workflows: Sequence[str] | None) -> PeriodData:
    span = window.params()
    scoped = {**span, "workflows": ",".join(workflows)} if workflows else span

    def rows(name: str, params: Mapping[str, str]) -> list[Row]:
        table: list[Row] = run(name, params).to_pylist()
        return table

    return PeriodData(
        window=window,
        traffic=rows("scorecard_traffic", scoped),
        routes=rows("scorecard_routes", scoped),
        quality=rows("scorecard_quality", {**scoped, "bucket_days": str(bucket_days(window))}),
        incidents=rows("scorecard_incidents", span),
        policy=rows("scorecard_policy", scoped),
        completeness=rows("scorecard_completeness", scoped),
        cost=rows("cost_per_outcome", span),
        routing=[r for r in rows("routing_share", span) if r["scope"] == "workflow"],
        latency=rows("latency_slo", span),
        key_caps=rows("scorecard_key_caps", span),
    )


# --------------------------------------------------------------------------- helpers


def _total(rows: Iterable[Row], column: str) -> float:
    return float(sum(row[column] or 0 for row in rows))


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


class Scope:
    """Which rows of a per-workflow result belong to one workflow, or to the overall figure."""

    def __init__(self, workflow: str, selected: tuple[str, ...] | None) -> None:
        self.workflow = workflow
        self.selected = selected

    def __call__(self, rows: Iterable[Row], column: str = "workflow_id") -> list[Row]:
        if self.workflow != OVERALL:
            return [row for row in rows if row[column] == self.workflow]
        if self.selected is None:
            return list(rows)
        return [row for row in rows if row[column] in self.selected]

    @property
    def is_overall(self) -> bool:
        return self.workflow == OVERALL


# --------------------------------------------------------------------------- figures

FigureMaker = Callable[["Context"], Figure]


@dataclass(frozen=True)
class Context:
    scope: Scope
    current: PeriodData
    previous: PeriodData
    options: Options

    def make(
        self,
        figure: str,
        value: float | None,
        previous: float | None,
        status: Status,
        reading: str,
        **detail: Any,
    ) -> Figure:
        return Figure(self.scope.workflow, figure, value, previous, status, reading, detail)

    def traffic(self, data: PeriodData) -> Row | None:
        if self.scope.is_overall:
            return next((row for row in data.traffic if row["scope"] == OVERALL), None)
        return next((row for row in self.scope(data.traffic) if row["scope"] == "workflow"), None)

    def traffic_value(self, data: PeriodData, column: str) -> float | None:
        row = self.traffic(data)
        return None if row is None or row[column] is None else float(row[column])


def cost_per_outcome(ctx: Context) -> Figure:
    def figures(data: PeriodData) -> tuple[float | None, float, int]:
        rows = ctx.scope(data.cost)
        spent, resolved = _total(rows, "total_cost_usd"), int(_total(rows, "resolved_tasks"))
        return _ratio(spent, resolved), spent, resolved

    value, spent, resolved = figures(ctx.current)
    previous, _, _ = figures(ctx.previous)
    if value is None and spent > 0:
        status: Status = "red"
        reading = f"{num.usd(spent)} spent on tasks and none resolved."
    elif value is None:
        status, reading = "n/a", "No task with an outcome in the period."
    else:
        status = tg.growth_status(value, previous)
        reading = (
            f"{num.usd(value)} per resolved task ({resolved:,} resolved), {num.trend_word(value, previous)}."
        )
    return ctx.make("cost_per_outcome_usd", value, previous, status, reading, resolved_tasks=resolved)


def spend(ctx: Context) -> Figure:
    value = ctx.traffic_value(ctx.current, "spend_usd") or 0.0
    previous = ctx.traffic_value(ctx.previous, "spend_usd")
    reading = f"{num.usd(value)} spent, {num.trend_word(value, previous)}"
    if previous is not None:
        reading += f" ({num.usd(previous)})"
    return ctx.make("spend_usd", value, previous, tg.growth_status(value, previous), reading + ".")


@dataclass(frozen=True)
class Budget:
    budget_usd: float
    source: str


def route_owners(rows: Iterable[Row]) -> dict[str, set[str]]:
    owners: dict[str, set[str]] = {}
    for row in rows:
        if row["route"] is not None and row["workflow_id"] is not None:
            owners.setdefault(row["route"], set()).add(row["workflow_id"])
    return owners


def workflow_budget(workflow: str, policy: Policy | None, routes: list[Row], days: float) -> Budget | None:
    """The workflow's cap x days, else the caps of the routes only it uses, when all of them have one."""
    if policy is None:
        return None
    capped = policy.workflows.get(workflow)
    if capped is not None and capped.max_budget_daily is not None:
        return Budget(capped.max_budget_daily * days, f"workflow cap {num.usd(capped.max_budget_daily)}/day")
    owners = route_owners(routes)
    used = sorted(route for route, users in owners.items() if workflow in users)
    caps = [_route_cap(policy, route) for route in used]
    if not used or any(cap is None for cap in caps) or any(owners[route] != {workflow} for route in used):
        return None
    total = float(sum(cap for cap in caps if cap is not None))
    return Budget(total * days, f"route caps {', '.join(used)}: {num.usd(total)}/day")


def _route_cap(policy: Policy, route: str) -> float | None:
    found = policy.route(route)
    return None if found is None else found.max_budget_daily


def budget_used(ctx: Context) -> Figure:
    def used(data: PeriodData) -> tuple[float | None, float, float, list[str]]:
        names = _workflow_names(ctx, data)
        budgets = {w: workflow_budget(w, ctx.options.policy, data.routes, data.window.days) for w in names}
        known = {w: b for w, b in budgets.items() if b is not None}
        spent = sum(_spend_of(data, w) for w in known)
        total = sum(b.budget_usd for b in known.values())
        sources = [f"{w}: {b.source}" if ctx.scope.is_overall else b.source for w, b in known.items()]
        return _ratio(spent, total), spent, total, sources

    value, spent, total, sources = used(ctx.current)
    previous = used(ctx.previous)[0]
    if value is None:
        return ctx.make("budget_used", None, previous, "n/a", "No budget set: the policy caps none of this.")
    reading = (
        f"{num.pct(value, 0)} of a {num.usd(total)} budget used ({num.usd(spent)}; {'; '.join(sources)})."
    )
    return ctx.make(
        "budget_used", value, previous, tg.budget_status(value), reading, budget_usd=total, spend_usd=spent
    )


def _workflow_names(ctx: Context, data: PeriodData) -> list[str]:
    if not ctx.scope.is_overall:
        return [ctx.scope.workflow]
    names = {row["workflow_id"] for row in data.traffic if row["scope"] == "workflow" and row["workflow_id"]}
    return sorted(names)


def _spend_of(data: PeriodData, workflow: str) -> float:
    row = next((r for r in data.traffic if r["scope"] == "workflow" and r["workflow_id"] == workflow), None)
    return 0.0 if row is None else float(row["spend_usd"])


def small_or_local(ctx: Context) -> Figure:
    def share(data: PeriodData) -> tuple[float | None, int]:
        rows = ctx.scope(data.routing)
        routed = int(_total(rows, "calls"))
        return _ratio(_total([r for r in rows if r["small_or_local"]], "calls"), routed), routed

    value, routed = share(ctx.current)
    previous, _ = share(ctx.previous)
    reading = (
        f"{num.pct(value, 0)} of {routed:,} routed calls on small or local models "
        f"(previous {num.pct(previous, 0)})."
        if value is not None
        else "No call was routed to a model."
    )
    status = tg.at_least(value, tg.SMALL_SHARE_GREEN, tg.SMALL_SHARE_AMBER)
    return ctx.make("small_or_local_share", value, previous, status, reading, routed_calls=routed)


def cache_hit_rate(ctx: Context) -> Figure:
    value = ctx.traffic_value(ctx.current, "cache_hit_rate")
    previous = ctx.traffic_value(ctx.previous, "cache_hit_rate")
    lookups = int(ctx.traffic_value(ctx.current, "cache_lookups") or 0)
    hits = int(ctx.traffic_value(ctx.current, "cache_hits") or 0)
    reading = (
        f"{num.pct(value)} of {lookups:,} lookups served from the cache ({hits:,} hits), "
        f"{num.change(value, previous, 'ratio')} on the previous period."
        if value is not None
        else "No call went through the cache."
    )
    return ctx.make(
        "cache_hit_rate",
        value,
        previous,
        tg.cache_status(value, previous),
        reading,
        lookups=lookups,
        hits=hits,
    )


def cache_saved(ctx: Context) -> Figure:
    value = ctx.traffic_value(ctx.current, "cache_saved_usd")
    previous = ctx.traffic_value(ctx.previous, "cache_saved_usd")
    hit_rate = ctx.traffic_value(ctx.current, "cache_hit_rate")
    status = tg.cache_status(hit_rate, ctx.traffic_value(ctx.previous, "cache_hit_rate"))
    hits = int(ctx.traffic_value(ctx.current, "cache_hits") or 0)
    trend = num.trend_word(value, previous)
    reading = f"About {num.usd(value or 0)} not spent thanks to {hits:,} cache hits ({trend})."
    return ctx.make("cache_saved_usd", value, previous, status, reading)


def error_rate(ctx: Context) -> Figure:
    value = ctx.traffic_value(ctx.current, "error_rate")
    previous = ctx.traffic_value(ctx.previous, "error_rate")
    attempted = int(ctx.traffic_value(ctx.current, "attempted") or 0)
    errors = int(ctx.traffic_value(ctx.current, "errors") or 0)
    refused = int(ctx.traffic_value(ctx.current, "over_budget") or 0)
    reading = (
        f"{num.pct(value, 2)} of {attempted:,} calls sent to a model failed ({errors:,}); "
        f"previous {num.pct(previous, 2)}"
        if value is not None
        else "No call was sent to a model"
    )
    if refused:
        reading += f"; {refused:,} more refused over budget"
    status = tg.at_most(value, tg.ERROR_RATE_GREEN, tg.ERROR_RATE_AMBER)
    return ctx.make("error_rate", value, previous, status, reading + ".", errors=errors, over_budget=refused)


def route_latencies(current: PeriodData, previous: PeriodData, options: Options) -> list[RouteLatency]:
    owners = route_owners(r for r in current.routes if r["attempted"])
    before = {row["route"]: row["latency_p95_ms"] for row in previous.latency}
    lines = []
    for row in current.latency:
        route = row["route"]
        if route is None or route not in owners:
            continue
        slo = options.slo_ms.get(route, options.default_slo_ms)
        p95 = row["latency_p95_ms"]
        status = tg.latency_status(p95, slo)
        lines.append(
            RouteLatency(
                route, tuple(sorted(owners[route])), row["calls"], p95, before.get(route), slo, status
            )
        )
    return lines


def latency(ctx: Context) -> Figure:
    def worst(data: PeriodData, other: PeriodData) -> RouteLatency | None:
        lines = route_latencies(data, other, ctx.options)
        mine = [line for line in lines if _mine(ctx.scope, line.workflows) and line.p95_ms is not None]
        return max(mine, key=lambda line: (line.p95_ms or 0) / line.slo_ms, default=None)

    now, before = worst(ctx.current, ctx.previous), worst(ctx.previous, ctx.current)
    if now is None:
        return ctx.make("latency_p95_ms", None, None, "n/a", "No call was sent to a model.")
    previous = before.p95_ms if before is not None and before.route == now.route else now.previous_p95_ms
    lines = [
        line
        for line in route_latencies(ctx.current, ctx.previous, ctx.options)
        if _mine(ctx.scope, line.workflows)
    ]
    within = sum(1 for line in lines if line.status == "green")
    reading = (
        f"p95 {num.ms(now.p95_ms)} on {now.route} against a {num.ms(now.slo_ms)} SLO; "
        f"{within} of {len(lines)} routes within their SLO."
    )
    return ctx.make(
        "latency_p95_ms", now.p95_ms, previous, now.status, reading, route=now.route, slo_ms=now.slo_ms
    )


def _mine(scope: Scope, workflows: Iterable[str]) -> bool:
    names = set(workflows)
    if scope.is_overall:
        return scope.selected is None or bool(names & set(scope.selected))
    return scope.workflow in names


def incidents_of(data: PeriodData, period: PeriodName) -> list[Incident]:
    by_seq: dict[int, list[Row]] = {}
    for row in data.incidents:
        by_seq.setdefault(row["seq"], []).append(row)
    found = []
    for seq, rows in sorted(by_seq.items()):
        first = rows[0]
        workflows = tuple(sorted(r["workflow_id"] for r in rows if r["workflow_id"] is not None))
        kind = first["kind"] if first["kind"] != "alert" else f"alert ({first['alert_kind'] or 'other'})"
        found.append(
            Incident(
                period,
                seq,
                first["ts"],
                kind,
                first["severity"],
                first["subject"],
                first["actor"],
                first["detail"],
                workflows,
            )
        )
    return found


def _incidents_in_scope(scope: Scope, found: list[Incident]) -> list[Incident]:
    if scope.is_overall and scope.selected is None:
        return found
    return [incident for incident in found if _mine(scope, incident.workflows)]


def incidents(ctx: Context) -> Figure:
    now = _incidents_in_scope(ctx.scope, incidents_of(ctx.current, "current"))
    before = _incidents_in_scope(ctx.scope, incidents_of(ctx.previous, "previous"))
    critical = sum(1 for i in now if i.severity == "critical")
    kinds: dict[str, int] = {}
    for incident in now:
        kinds[incident.kind] = kinds.get(incident.kind, 0) + 1
    listed = ", ".join(f"{n} {kind.replace('_', ' ')}" for kind, n in sorted(kinds.items()))
    reading = (
        f"{len(now)} incident{'s' if len(now) != 1 else ''}: {listed} ({critical} critical); "
        f"previous period {len(before)}."
        if now
        else f"No incident; previous period {len(before)}."
    )
    status = tg.incident_status(critical, len(now) - critical)
    return ctx.make("incidents", len(now), len(before), status, reading, critical=critical, by_kind=kinds)


def policy_violations(ctx: Context) -> Figure:
    def counts(data: PeriodData) -> dict[str, int]:
        rows = ctx.scope(data.policy)
        columns = ("critical_violations", "injection_blocks", "policy_denials", "overrides")
        return {column: int(_total(rows, column)) for column in columns}

    now, before = counts(ctx.current), counts(ctx.previous)
    value = now["critical_violations"]
    reading = (
        f"{value} critical (judged non-compliant answers); {now['injection_blocks']} prompt injections "
        f"blocked, {now['policy_denials']} tool calls denied by policy, {now['overrides']} human overrides."
    )
    status: Status = "red" if value else "green"
    return ctx.make(
        "critical_policy_violations", value, before["critical_violations"], status, reading, **now
    )


def _verdicts(scope: Scope, data: PeriodData) -> dict[str, int]:
    rows = scope(data.quality)
    return {v: int(_total(rows, v)) for v in ("judged", "correct", "partial", "incorrect")}


def judge_incorrect(ctx: Context) -> Figure:
    now, before = _verdicts(ctx.scope, ctx.current), _verdicts(ctx.scope, ctx.previous)
    value, previous = _ratio(now["incorrect"], now["judged"]), _ratio(before["incorrect"], before["judged"])
    if value is None:
        return ctx.make(
            "judge_incorrect_share", None, previous, "n/a", "No judged call in the period.", **now
        )
    mix = " · ".join(f"{num.pct(now[v] / now['judged'], 0)} {v}" for v in ("correct", "partial", "incorrect"))
    reading = f"{now['judged']:,} judged: {mix}; incorrect was {num.pct(previous, 0)} in the previous period."
    return ctx.make(
        "judge_incorrect_share", value, previous, tg.quality_status(value, previous), reading, **now
    )


def completeness(ctx: Context) -> Figure:
    def share(data: PeriodData) -> tuple[float | None, int, int, int]:
        rows = ctx.scope(data.completeness)
        seen, full = int(_total(rows, "requests_seen")), int(_total(rows, "full_traces"))
        return _ratio(full, seen), seen, full, int(_total(rows, "missing_traces"))

    value, seen, full, missing = share(ctx.current)
    previous = share(ctx.previous)[0]
    reading = (
        f"{num.pct(value, 2)} of {seen:,} requests seen have a full trace "
        f"({missing:,} missing, {seen - full - missing:,} incomplete)."
        if value is not None
        else "No request seen in the period."
    )
    status = tg.completeness_status(value)
    return ctx.make(
        "trace_completeness", value, previous, status, reading, requests_seen=seen, full_traces=full
    )


MAKERS: tuple[FigureMaker, ...] = (
    cost_per_outcome,
    spend,
    budget_used,
    small_or_local,
    cache_hit_rate,
    cache_saved,
    error_rate,
    latency,
    incidents,
    policy_violations,
    judge_incorrect,
    completeness,
)


# --------------------------------------------------------------------------- budgets and series


def budget_lines(data: PeriodData, policy: Policy | None, workflows: Iterable[str]) -> list[BudgetLine]:
    lines = []
    for workflow in workflows:
        budget = workflow_budget(workflow, policy, data.routes, data.window.days)
        if budget is not None:
            spent = _spend_of(data, workflow)
            lines.append(_budget_line(f"workflow:{workflow}", budget.source, budget.budget_usd, spent))
    for row in data.key_caps:
        caps = [f"{num.usd(row['daily_cap'])}/day" if row["daily_cap"] is not None else ""]
        caps.append(f"{num.usd(row['monthly_cap'])}/month" if row["monthly_cap"] is not None else "")
        cap = "key cap " + ", ".join(c for c in caps if c)
        lines.append(
            _budget_line(f"key:{row['name']}", cap, float(row["budget_usd"]), float(row["spend_usd"]))
        )
    return lines


def _budget_line(scope: str, cap: str, budget: float, spent: float) -> BudgetLine:
    return BudgetLine(scope, cap, budget, spent, tg.budget_status(_ratio(spent, budget)))


def quality_points(*periods: PeriodData) -> list[QualityPoint]:
    return [
        QualityPoint(
            row["workflow_id"] or "(none)",
            row["bucket_start"],
            row["judged"],
            row["correct"],
            row["partial"],
            row["incorrect"],
        )
        for data in periods
        for row in data.quality
    ]


def daily_points(run: QueryRunner, window: Window, workflows: Sequence[str] | None) -> list[DailyPoint]:
    params = {**window.before().params(), "to": window.end.isoformat()}
    if workflows:
        params["workflows"] = ",".join(workflows)
    rows: list[Row] = run("scorecard_daily", params).to_pylist()
    return [
        DailyPoint(
            row["day"],
            row["workflow_id"] or "(none)",
            row["calls"],
            row["spend_usd"],
            row["attempted"],
            row["errors"],
        )
        for row in rows
    ]


# --------------------------------------------------------------------------- the scorecard


def workflow_names(
    current: PeriodData, previous: PeriodData, selected: Sequence[str] | None
) -> tuple[str, ...]:
    if selected:
        return tuple(selected)
    seen = {
        row["workflow_id"]
        for data in (current, previous)
        for row in (*data.traffic, *data.cost)
        if row.get("workflow_id") is not None
    }
    return tuple(sorted(seen, key=lambda name: (name == JUDGE_WORKFLOW, name)))


def build(run: QueryRunner, options: Options, now: datetime | None = None) -> Scorecard:
    """Compute the scorecard of options.window against the window before it."""
    selected = tuple(dict.fromkeys(options.workflows)) if options.workflows else None
    current = fetch(run, options.window, selected)
    previous = fetch(run, options.window.before(), selected)
    names = workflow_names(current, previous, selected)
    figures = [
        maker(Context(Scope(workflow, selected), current, previous, options))
        for workflow in (OVERALL, *names)
        for maker in MAKERS
    ]
    found = incidents_of(previous, "previous") + incidents_of(current, "current")
    overall = Scope(OVERALL, selected)
    return Scorecard(
        generated_at=now or utc_now(),
        window=options.window,
        previous_window=options.window.before(),
        workflows=names,
        selected=selected,
        policy_source=options.policy_source,
        figures=tuple(figures),
        incidents=tuple(_incidents_in_scope(overall, found)),
        budgets=tuple(budget_lines(current, options.policy, names)),
        routes=tuple(
            line for line in route_latencies(current, previous, options) if _mine(overall, line.workflows)
        ),
        quality=tuple(quality_points(previous, current)),
        daily=tuple(daily_points(run, options.window, selected)),
    )
