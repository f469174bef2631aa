"""What the panes' charts plot: series over numeric positions, with their tick labels. No Textual here.

A chart is data only (`ChartData`); `console/tui/panes/charts.py` draws it with plotext
in the app's theme colours, at whatever size the terminal gives it. The builders below
turn the read model's rows into charts: spend per day stacked by route and cost per
outcome per workflow (Cost), calls, errors and latency per minute (Traffic), output
tokens per second and calls in flight per provider (Fleet), and a workflow's baseline
against its last 7 days (Drift).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Literal

import duckdb
import numpy as np

from console.store import queries
from console.tui import humanize
from console.tui.readmodel.cost import RouteSpend, WorkflowCost

ChartKind = Literal["lines", "stacked", "hbars"]
Unit = Literal["", "ms", "usd", "%"]  # how the value axis's ticks read
# What a series is: its colour comes from the theme by role; "" takes the next colour of the palette.
Role = Literal["", "success", "warning", "error", "muted"]

TIMELINE_MINUTES = 60
MAX_SERIES = 5  # the largest series; the rest are summed into "other" (stacked) or left out (lines)
HISTOGRAM_BINS = 12
HISTOGRAM_TOP = 0.99  # bins end at this quantile of both windows: a long tail would squash the rest
VERDICT_ROLES: dict[str, Role] = {"correct": "success", "partial": "warning", "incorrect": "error"}


@dataclass(frozen=True)
class Series:
    name: str
    values: list[float]
    role: Role = ""
    x: list[float] | None = None  # lines only: its own positions (e.g. only minutes with calls)


@dataclass(frozen=True)
class ChartData:
    """One chart: for lines and stacked bars, a value of each series at each of `x`; hbars use `labels`."""

    title: str
    kind: ChartKind
    x: list[float]
    series: list[Series]
    xticks: list[tuple[float, str]] = field(default_factory=list)  # position, label
    labels: list[str] = field(default_factory=list)  # hbars: a bar's name
    ylabel: str = ""
    empty: str = "no data"  # what the chart says when it has nothing to plot
    unit: Unit = ""

    @property
    def has_data(self) -> bool:
        return any(value for series in self.series for value in series.values)

    @property
    def top(self) -> float:
        """The largest value the value axis must reach (a stack's sum for stacked bars)."""
        if self.kind == "stacked":
            return max(
                (sum(column) for column in zip(*(s.values for s in self.series), strict=True)), default=0
            )
        return max((value for series in self.series for value in series.values), default=0.0)


def value_label(value: float, unit: Unit) -> str:
    """A tick of the value axis as the panes print numbers."""
    if unit == "ms":
        return humanize.duration_ms(value)
    if unit == "usd":
        return humanize.usd(value)
    if unit == "%":
        return f"{value:.0f}%"
    return f"{value:.3g}"


def value_ticks(top: float, count: int, unit: Unit) -> list[tuple[float, str]]:
    """`count` evenly spaced ticks from 0 to `top`, labelled."""
    count = max(2, count)
    return [(top * i / (count - 1), value_label(top * i / (count - 1), unit)) for i in range(count)]


# -- Cost ------------------------------------------------------------------------------


def spend_per_day(routes: Sequence[RouteSpend], days: Sequence[date]) -> ChartData:
    """Spend per UTC day, a stack per route (the largest MAX_SERIES, then "other")."""
    ranked = sorted(routes, key=lambda r: -float(r.cost_usd))
    shown, rest = ranked[:MAX_SERIES], ranked[MAX_SERIES:]
    series = [Series(r.route or "(no route)", [float(v) for v in r.daily]) for r in shown]
    if rest:
        other = [sum(float(r.daily[i]) for r in rest) for i in range(len(days))]
        series.append(Series(f"other ({len(rest)})", other, "muted"))
    return ChartData(
        title=f"Spend per day by route · {len(days)} d",
        kind="stacked",
        x=[float(i) for i in range(len(days))],
        series=series,
        xticks=[(float(i), day.strftime("%m-%d")) for i, day in enumerate(days)],
        ylabel="USD",
        empty="no spend",
        unit="usd",
    )


def cost_per_outcome(workflows: Sequence[WorkflowCost], window_days: int) -> ChartData:
    """Cost per resolved task of each workflow over the window, a bar each (the dearest first)."""
    priced = sorted(
        (
            (w.workflow_id or "(no workflow)", float(w.cost_per_outcome_usd))
            for w in workflows
            if w.cost_per_outcome_usd is not None
        ),
        key=lambda item: -item[1],
    )
    return ChartData(
        title=f"Cost per outcome by workflow · {window_days} d",
        kind="hbars",
        x=[float(i) for i in range(len(priced))],
        series=[Series("USD per resolved task", [cost for _, cost in priced])],
        labels=[name for name, _ in priced],
        ylabel="USD per resolved task",
        empty="no resolved tasks",
        unit="usd",
    )


# -- the last hour, per minute -----------------------------------------------------------


def minutes_of(now: datetime, minutes: int = TIMELINE_MINUTES) -> list[datetime]:
    """The UTC minutes of the window that ends at `now`, oldest first (the current one last)."""
    last = now.replace(second=0, microsecond=0)
    return [last - timedelta(minutes=back) for back in range(minutes - 1, -1, -1)]


def _minute_ticks(minutes: Sequence[datetime]) -> list[tuple[float, str]]:
    return [
        (float(i), minute.strftime("%H:%M")) for i, minute in enumerate(minutes) if minute.minute % 5 == 0
    ]


def _per_minute(
    rows: Sequence[Mapping[str, Any]], minutes: Sequence[datetime], column: str, scale: float = 1.0
) -> list[float]:
    by_minute = {row["minute"]: row[column] for row in rows}
    return [float(by_minute.get(minute) or 0) * scale for minute in minutes]


def _measured(
    rows: Sequence[Mapping[str, Any]], minutes: Sequence[datetime], column: str, name: str, role: Role
) -> Series:
    """A line through the minutes that have a value only (a minute without calls has no latency)."""
    index = {minute: i for i, minute in enumerate(minutes)}
    points = sorted(
        (index[r["minute"]], float(r[column])) for r in rows if r["minute"] in index and r[column] is not None
    )
    return Series(name, [v for _, v in points], role, x=[float(i) for i, _ in points])


@dataclass(frozen=True)
class TrafficCharts:
    load: ChartData  # requests and errors per second
    latency: ChartData  # p50 and p95


def traffic_charts(rows: Sequence[Mapping[str, Any]], now: datetime, described: str) -> TrafficCharts:
    """Calls and errors per second and p50/p95 latency, per minute of the last hour (`traffic_per_minute`)."""
    minutes = minutes_of(now)
    ticks = _minute_ticks(minutes)
    x = [float(i) for i in range(len(minutes))]
    load = ChartData(
        title=f"Requests/s and errors/s · last hour · {described}",
        kind="lines",
        x=x,
        series=[
            Series("requests/s", _per_minute(rows, minutes, "calls", 1 / 60)),
            Series("errors/s", _per_minute(rows, minutes, "errors", 1 / 60), "error"),
        ],
        xticks=ticks,
        ylabel="per s",
        empty="no calls in the last hour",
    )
    latency = ChartData(
        title="Latency p50 and p95 · last hour",
        kind="lines",
        x=x,
        series=[
            _measured(rows, minutes, "latency_p50_ms", "p50", ""),
            _measured(rows, minutes, "latency_p95_ms", "p95", "warning"),
        ],
        xticks=ticks,
        empty="no calls sent in the last hour",
        unit="ms",
    )
    return TrafficCharts(load, latency)


def traffic_timeline(
    cur: duckdb.DuckDBPyConnection, params: Mapping[str, object], now: datetime
) -> list[Any]:
    """The rows of `traffic_per_minute` for the hour before `now`, with the stream's filter fields."""
    window = {"from": now - timedelta(minutes=TIMELINE_MINUTES), "to": now}
    keep = {name: value for name, value in params.items() if name not in ("limit", "since")}
    rows: list[Any] = queries.run(cur, "traffic_per_minute", {**keep, **window}).to_pylist()
    return rows


@dataclass(frozen=True)
class FleetCharts:
    tokens: ChartData  # output tokens per second, per provider
    in_flight: ChartData  # calls under way, per provider


def fleet_charts(rows: Sequence[Mapping[str, Any]], now: datetime) -> FleetCharts:
    """Per provider and minute of the last hour (`provider_minutes`): tokens/s and calls in flight."""
    minutes = minutes_of(now)
    by_provider: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        by_provider.setdefault(str(row["provider"]), []).append(row)
    ranked = sorted(by_provider, key=lambda p: -sum(int(r["calls"]) for r in by_provider[p]))[:MAX_SERIES]
    x = [float(i) for i in range(len(minutes))]
    ticks = _minute_ticks(minutes)

    def chart(title: str, column: str, ylabel: str) -> ChartData:
        series = [Series(p, _per_minute(by_provider[p], minutes, column)) for p in sorted(ranked)]
        return ChartData(
            title, "lines", x, series, ticks, ylabel=ylabel, empty="no provider called this hour"
        )

    return FleetCharts(
        tokens=chart("Output tokens/s per provider · last hour", "tokens_per_second", "tok/s"),
        in_flight=chart("Calls in flight per provider (mean) · last hour", "in_flight", "calls"),
    )


def provider_minutes(cur: duckdb.DuckDBPyConnection, now: datetime) -> list[Any]:
    window = {"from": now - timedelta(minutes=TIMELINE_MINUTES), "to": now}
    rows: list[Any] = queries.run(cur, "provider_minutes", window).to_pylist()
    return rows


# -- Drift: a workflow's baseline against its last 7 days -------------------------------


FloatArray = np.ndarray[Any, np.dtype[np.float64]]


def distribution(
    title: str,
    baseline: FloatArray,
    current: FloatArray,
    windows: tuple[str, str],
    unit: str,
    tick_unit: Unit = "",
) -> ChartData:
    """The share of each window's calls per bin, the bins shared by both (up to HISTOGRAM_TOP)."""
    both = np.concatenate([baseline, current])
    if both.size == 0:
        return ChartData(title, "lines", [], [], empty="no served calls in either window")
    top = float(np.quantile(both, HISTOGRAM_TOP))
    low = float(both.min())
    edges = np.linspace(low, top if top > low else low + 1.0, HISTOGRAM_BINS + 1)
    centres = [float(v) for v in (edges[:-1] + edges[1:]) / 2]
    both_windows: tuple[tuple[str, FloatArray, Role], ...] = (
        (windows[0], baseline, "muted"),
        (windows[1], current, ""),
    )
    series = []
    for name, values, role in both_windows:
        counts, _ = np.histogram(np.clip(values, low, edges[-1]), bins=edges)
        shares = counts / values.size * 100 if values.size else np.zeros(HISTOGRAM_BINS)
        series.append(Series(f"{name} ({values.size:,})", [float(v) for v in shares], role))
    ticks = [(centre, value_label(centre, tick_unit)) for centre in centres]
    return ChartData(title, "lines", centres, series, ticks, ylabel=f"% of calls by {unit}", unit="%")


def verdict_mix(title: str, counts: Mapping[str, Mapping[str, int]], windows: tuple[str, str]) -> ChartData:
    """Two stacked bars, baseline and last 7 days: the share of each verdict (`counts[period][verdict]`)."""
    periods = ("baseline", "current")
    totals = [sum(counts.get(p, {}).values()) for p in periods]
    series = [
        Series(
            verdict,
            [
                counts.get(p, {}).get(verdict, 0) / total * 100 if total else 0.0
                for p, total in zip(periods, totals, strict=True)
            ],
            role,
        )
        for verdict, role in VERDICT_ROLES.items()
    ]
    ticks = [(float(i), f"{name} ({totals[i]:,})") for i, name in enumerate(windows)]
    return ChartData(
        title, "stacked", [0.0, 1.0], series, ticks, ylabel="% of verdicts", empty="no verdicts", unit="%"
    )


@dataclass(frozen=True)
class WorkflowCharts:
    latency: ChartData
    output_tokens: ChartData
    verdicts: ChartData


def drift_charts(
    samples: Mapping[tuple[str, str], Mapping[str, FloatArray]],
    verdicts: Sequence[Mapping[str, Any]],
    days: int,
    baseline_days: int,
) -> dict[str, WorkflowCharts]:
    """Per workflow: its latency and output-token distributions and its verdict mix, both windows."""
    windows = (f"baseline {baseline_days} d", f"last {days} d")
    mix: dict[str, dict[str, dict[str, int]]] = {}
    for row in verdicts:
        per_period = mix.setdefault(row["workflow_id"], {}).setdefault(row["period"], {})
        per_period[row["verdict"]] = per_period.get(row["verdict"], 0) + int(row["verdicts"])
    empty: FloatArray = np.empty(0, dtype=np.float64)
    found = {}
    for workflow in sorted({w for w, _ in samples} | set(mix)):
        base = samples.get((workflow, "baseline"), {})
        cur = samples.get((workflow, "current"), {})
        found[workflow] = WorkflowCharts(
            latency=distribution(
                f"Latency · {workflow}",
                base.get("latency_ms", empty),
                cur.get("latency_ms", empty),
                windows,
                "latency",
                "ms",
            ),
            output_tokens=distribution(
                f"Output tokens · {workflow}",
                base.get("output_tokens", empty),
                cur.get("output_tokens", empty),
                windows,
                "output tokens",
            ),
            verdicts=verdict_mix(f"Verdict mix · {workflow}", mix.get(workflow, {}), windows),
        )
    return found
