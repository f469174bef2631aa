"""The scorecard as one self-contained HTML file: inline CSS and SVG, no script, prints on A4."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from html import escape

from console.reports import charts
from console.reports import numbers as num
from console.reports.scorecard import OVERALL, Figure, Scorecard
from console.reports.targets import SMALL_SHARE_GREEN, TARGETS, Status

STATUS_COLORS: dict[Status, str] = {
    "green": "#2e8b57",
    "amber": "#e08a1e",
    "red": "#c0392b",
    "n/a": "#9a9a9a",
}

CSS = """
:root { color-scheme: light; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222; margin: 24px auto;
       max-width: 1000px; padding: 0 16px; line-height: 1.4; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 19px; border-bottom: 2px solid #222; padding-bottom: 3px; margin-top: 30px; }
h3 { font-size: 15px; margin: 18px 0 6px; }
.meta { color: #555; font-size: 13px; }
.tiles { display: grid; grid-template-columns: repeat(auto-fill, minmax(230px, 1fr)); gap: 10px; }
.tile { border: 1px solid #ddd; border-left: 6px solid #999; padding: 8px 10px; border-radius: 4px; }
.tile .name { font-size: 12px; color: #555; } .tile .value { font-size: 22px; font-weight: 600; }
.tile .change { font-size: 12px; color: #555; } .tile .reading { font-size: 12px; margin-top: 4px; }
table { border-collapse: collapse; width: 100%; font-size: 12.5px; margin: 6px 0 10px; }
th, td { border-bottom: 1px solid #e2e2e2; padding: 4px 6px; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.status { display: inline-block; min-width: 46px; text-align: center; color: #fff; border-radius: 3px;
          padding: 1px 6px; font-size: 11.5px; font-weight: 600; }
.chart { width: 100%; height: auto; display: block; margin: 4px 0 12px; }
section { break-inside: avoid-page; } .note { font-size: 12px; color: #555; }
@media print {
  body { margin: 0; max-width: none; font-size: 11px; }
  * { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
  h2 { break-after: avoid; } .tile, table, svg, tr { break-inside: avoid; }
  @page { size: A4; margin: 14mm; }
}
"""


def _status(status: Status) -> str:
    return f'<span class="status" style="background:{STATUS_COLORS[status]}">{escape(status)}</span>'


def _table(
    header: Sequence[str], rows: Sequence[Sequence[str]], numeric: frozenset[int] = frozenset()
) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>" for i, c in enumerate(r))
        + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _tile(f: Figure) -> str:
    unit = f.target.unit
    return (
        f'<div class="tile" style="border-left-color:{STATUS_COLORS[f.status]}">'
        f'<div class="name">{escape(f.target.title)} {_status(f.status)}</div>'
        f'<div class="value">{escape(num.show(f.value, unit))}</div>'
        f'<div class="change">previous {escape(num.show(f.previous, unit))} · '
        f"{escape(num.change(f.value, f.previous, unit))} · target {escape(f.target.target)}</div>"
        f'<div class="reading">{escape(f.reading)}</div></div>'
    )


def _figure_table(figures: Sequence[Figure]) -> str:
    rows = [
        [
            escape(f.target.title),
            escape(num.show(f.value, f.target.unit)),
            escape(num.show(f.previous, f.target.unit)),
            escape(num.change(f.value, f.previous, f.target.unit)),
            escape(f.target.target),
            _status(f.status),
            escape(f.reading),
        ]
        for f in figures
    ]
    return _table(
        ["figure", "value", "previous", "change", "target", "status", "reading"], rows, frozenset({1, 2, 3})
    )


def _matrix(card: Scorecard) -> str:
    names = [OVERALL, *card.workflows]
    rows = [[escape(t.title), *(_status(card.figure(n, t.figure).status) for n in names)] for t in TARGETS]
    return _table(["figure", *names], rows)


def _days(card: Scorecard) -> list[date]:
    first, last = card.previous_window.start.date(), (card.window.end - timedelta(microseconds=1)).date()
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def _position(card: Scorecard, moment: date, days: list[date]) -> float:
    return float(days.index(moment)) if moment in days else 0.0


def _incident_markers(card: Scorecard, days: list[date]) -> list[charts.Marker]:
    boundary = charts.Marker(_position(card, card.window.start.date(), days), "current period →", "#444")
    found = [
        charts.Marker(
            _position(card, i.ts.date(), days) + 0.5,
            i.kind.replace("_", " "),
            charts.SEVERITY_COLORS.get(i.severity, "#666"),
        )
        for i in card.incidents
    ]
    return [boundary, *found]


def _spend_chart(card: Scorecard) -> str:
    days = _days(card)
    series = {w: [0.0] * len(days) for w in card.workflows}
    for point in card.daily:
        if point.workflow in series and point.day in days:
            series[point.workflow][days.index(point.day)] += point.spend_usd
    labels = [d.strftime("%m-%d") for d in days]
    title = "Daily spend by workflow (USD), previous and current period, with incidents"
    return charts.stacked_bars(title, labels, series, num.usd, _incident_markers(card, days))


def _error_chart(card: Scorecard) -> str:
    days = _days(card)
    attempted, errors = [0] * len(days), [0] * len(days)
    for point in card.daily:
        if point.day in days:
            attempted[days.index(point.day)] += point.attempted
            errors[days.index(point.day)] += point.errors
    rate = [e / a if a else None for e, a in zip(errors, attempted, strict=True)]
    labels = [d.strftime("%m-%d") for d in days]
    return charts.lines(
        "Daily error rate, all workflows in scope",
        labels,
        {"error rate": rate},
        lambda v: num.pct(v, 1),
        _incident_markers(card, days),
        target=0.01,
    )


def _quality_buckets(card: Scorecard) -> list[tuple[str, dict[str, int]]]:
    buckets: dict[str, dict[str, int]] = {}
    for q in sorted(card.quality, key=lambda q: q.bucket_start):
        bucket = buckets.setdefault(
            q.bucket_start.strftime("%m-%d"), {"correct": 0, "partial": 0, "incorrect": 0}
        )
        bucket["correct"] += q.correct
        bucket["partial"] += q.partial
        bucket["incorrect"] += q.incorrect
    return list(buckets.items())


def _verdict_chart(card: Scorecard) -> str:
    buckets = _quality_buckets(card)
    labels = [label for label, _ in buckets]
    shares = {
        verdict: [counts[verdict] / (sum(counts.values()) or 1) for _, counts in buckets]
        for verdict in ("correct", "partial", "incorrect")
    }
    colors = list(charts.VERDICT_COLORS.values())
    return charts.stacked_bars(
        "Judge verdict mix per bucket (share of judged calls), previous and current period",
        labels,
        shares,
        lambda v: num.pct(v, 0),
        colors=colors,
    )


def _incorrect_chart(card: Scorecard) -> str:
    labels = sorted({q.bucket_start.strftime("%m-%d") for q in card.quality})
    series: dict[str, list[float | None]] = {}
    for workflow in card.workflows:
        points = {q.bucket_start.strftime("%m-%d"): q for q in card.quality if q.workflow == workflow}
        if points:
            series[workflow] = [
                points[lb].incorrect / points[lb].judged if lb in points and points[lb].judged else None
                for lb in labels
            ]
    title = "Judged incorrect share per workflow and bucket"
    return charts.lines(title, labels, series, lambda v: num.pct(v, 0), target=0.10)


def _share_chart(card: Scorecard) -> str:
    items = []
    for workflow in (OVERALL, *card.workflows):
        f = card.figure(workflow, "small_or_local_share")
        if f.value is not None:
            note = f"{num.pct(f.value, 0)} ({f.status})"
            items.append(charts.Bar(workflow, f.value, SMALL_SHARE_GREEN, STATUS_COLORS[f.status], note))
    return charts.bars(
        "Share of routed calls on small or local models", items, lambda v: num.pct(v, 0), "target 60 %"
    )


def _latency_chart(card: Scorecard) -> str:
    items = [
        charts.Bar(
            r.route,
            r.p95_ms or 0.0,
            r.slo_ms,
            STATUS_COLORS[r.status],
            f"{num.ms(r.p95_ms)} (SLO {num.ms(r.slo_ms)})",
        )
        for r in card.routes
    ]
    return charts.bars("p95 latency per route against its SLO", items, num.ms, "the route's SLO")


def _budget_section(card: Scorecard) -> str:
    if not card.budgets:
        return (
            '<p class="note">No budget set: the policy in use and the virtual keys cap nothing in scope.</p>'
        )
    items = [
        charts.Bar(
            b.scope,
            b.used or 0.0,
            1.0,
            STATUS_COLORS[b.status],
            f"{num.usd(b.spend_usd)} of {num.usd(b.budget_usd)}",
        )
        for b in card.budgets
    ]
    rows = [
        [
            escape(b.scope),
            escape(b.cap),
            escape(num.usd(b.budget_usd)),
            escape(num.usd(b.spend_usd)),
            escape(num.pct(b.used, 0)),
            _status(b.status),
        ]
        for b in card.budgets
    ]
    chart = charts.bars(
        "Spend against budget (share of the period's budget)",
        items,
        lambda v: num.pct(v, 0),
        "100 % of budget",
    )
    return chart + _table(["scope", "cap", "budget", "spend", "used", "status"], rows, frozenset({2, 3, 4}))


def _timeline(card: Scorecard) -> str:
    start, end = card.previous_window.start, card.window.end
    span = (end - start).total_seconds()
    events = [
        charts.Event((i.ts - start).total_seconds() / span, i.kind.replace("_", " "), i.severity)
        for i in card.incidents
    ]
    return charts.timeline(
        "Incidents over the previous and the current period",
        events,
        f"{start:%Y-%m-%d}",
        f"{card.window.start:%Y-%m-%d}",
        f"{end:%Y-%m-%d}",
    )


def _incident_table(card: Scorecard) -> str:
    if not card.incidents:
        return '<p class="note">No incident in either period.</p>'
    rows = [
        [
            escape(i.period),
            escape(f"{i.ts:%Y-%m-%d %H:%M}"),
            escape(i.kind.replace("_", " ")),
            escape(i.severity),
            f"<code>{escape(i.subject)}</code>",
            escape(", ".join(i.workflows) or "–"),
            escape(i.detail or ""),
        ]
        for i in card.incidents
    ]
    return _table(["period", "when (UTC)", "kind", "severity", "subject", "workflows", "detail"], rows)


def _workflow_rows(card: Scorecard, names: Sequence[str]) -> str:
    rows = []
    for workflow in (OVERALL, *card.workflows):
        cells = [escape(workflow)]
        for name in names:
            f = card.figure(workflow, name)
            cells.append(f"{escape(num.show(f.value, f.target.unit))} {_status(f.status)}")
        rows.append(cells)
    titles = [next(t.title for t in TARGETS if t.figure == n) for n in names]
    return _table(["workflow", *titles], rows)


def _section(title: str, *parts: str) -> str:
    return f"<section><h2>{escape(title)}</h2>{''.join(parts)}</section>"


def render(card: Scorecard) -> str:
    scope = ", ".join(card.selected) if card.selected else "all workflows"
    details = "".join(f"<h3>{escape(w)}</h3>{_figure_table(card.of(w))}" for w in card.workflows)
    targets = _table(
        ["figure", "target", "how it is graded"],
        [[escape(t.title), escape(t.target), escape(t.grading)] for t in TARGETS],
    )
    body = [
        "<header><h1>AI scorecard</h1>",
        f'<p class="meta">Period <b>{escape(card.window.label())}</b> (UTC), compared with '
        f"{escape(card.previous_window.label())} · scope: {escape(scope)} · "
        f"policy: {escape(card.policy_source)} · "
        f"generated {card.generated_at:%Y-%m-%d %H:%M} UTC</p></header>",
        _section("Summary", '<div class="tiles">', *(_tile(f) for f in card.of(OVERALL)), "</div>"),
        _section("Status by workflow", _matrix(card)),
        _section(
            "Cost",
            _spend_chart(card),
            _workflow_rows(card, ["cost_per_outcome_usd", "spend_usd", "cache_saved_usd"]),
        ),
        _section("Spend against budget", _budget_section(card)),
        _section(
            "Routing and cache",
            _share_chart(card),
            _workflow_rows(card, ["small_or_local_share", "cache_hit_rate", "cache_saved_usd"]),
        ),
        _section(
            "Reliability",
            _error_chart(card),
            _latency_chart(card),
            _workflow_rows(card, ["error_rate", "latency_p95_ms"]),
        ),
        _section(
            "Incidents",
            _timeline(card),
            _incident_table(card),
            _workflow_rows(card, ["incidents", "critical_policy_violations"]),
        ),
        _section(
            "Quality",
            _verdict_chart(card),
            _incorrect_chart(card),
            _workflow_rows(card, ["judge_incorrect_share"]),
        ),
        _section("Trace completeness", _workflow_rows(card, ["trace_completeness"])),
        _section("Workflows in detail", details),
        _section("Targets", targets),
    ]
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>AI scorecard {escape(card.window.label())}</title><style>{CSS}</style></head>"
        f"<body>{''.join(body)}</body></html>\n"
    )
