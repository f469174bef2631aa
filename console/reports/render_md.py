"""The scorecard as Markdown: pipe tables that read in a terminal and render in a pull request."""

from __future__ import annotations

from console.reports import numbers as num
from console.reports.scorecard import OVERALL, Figure, Scorecard
from console.reports.targets import TARGETS, Status

# Words, not colour emoji: they keep the padded columns aligned in a terminal.
MARKS: dict[Status, str] = {"green": "GREEN", "amber": "AMBER", "red": "RED", "n/a": "n/a"}


def table(header: list[str], rows: list[list[str]], right: frozenset[int] = frozenset()) -> list[str]:
    """A pipe table with padded columns; columns in `right` are right-aligned."""
    cells = [[_cell(c) for c in row] for row in [header, *rows]]
    widths = [max(3, *(len(row[i]) for row in cells)) for i in range(len(header))]

    def line(row: list[str]) -> str:
        padded = [
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        return "| " + " | ".join(padded) + " |"

    rule = (
        "|"
        + "|".join(("-" * (w + 1) + ":") if i in right else "-" * (w + 2) for i, w in enumerate(widths))
        + "|"
    )
    return [line(cells[0]), rule, *(line(row) for row in cells[1:])]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _figure_rows(figures: list[Figure]) -> list[str]:
    rows = [
        [
            f.target.title,
            num.show(f.value, f.target.unit),
            num.show(f.previous, f.target.unit),
            num.change(f.value, f.previous, f.target.unit),
            f.target.target,
            MARKS[f.status],
        ]
        for f in figures
    ]
    lines = table(["figure", "value", "previous", "change", "target", "status"], rows, frozenset({1, 2, 3}))
    return [*lines, "", *(f"- **{f.target.title}**: {_cell(f.reading)}" for f in figures)]


def _matrix(card: Scorecard) -> list[str]:
    names = [OVERALL, *card.workflows]
    rows = [[t.title, *(MARKS[card.figure(n, t.figure).status] for n in names)] for t in TARGETS]
    return table(["figure", *names], rows)


def _incidents(card: Scorecard) -> list[str]:
    if not card.incidents:
        return ["No incident in either period."]
    rows = [
        [
            i.period,
            f"{i.ts:%Y-%m-%d %H:%M}",
            i.kind.replace("_", " "),
            i.severity,
            f"`{i.subject}`",
            ", ".join(i.workflows) or "–",
            i.detail or "",
        ]
        for i in card.incidents
    ]
    return table(["period", "when (UTC)", "kind", "severity", "subject", "workflows", "detail"], rows)


def _budgets(card: Scorecard) -> list[str]:
    if not card.budgets:
        return ["No budget set: the policy in use and the virtual keys cap nothing in scope."]
    rows = [
        [
            f"`{b.scope}`",
            b.cap,
            num.usd(b.budget_usd),
            num.usd(b.spend_usd),
            num.pct(b.used, 0),
            MARKS[b.status],
        ]
        for b in card.budgets
    ]
    return table(["scope", "cap", "budget", "spend", "used", "status"], rows, frozenset({2, 3, 4}))


def _routes(card: Scorecard) -> list[str]:
    rows = [
        [
            r.route,
            ", ".join(r.workflows),
            f"{r.calls:,}",
            num.ms(r.p95_ms),
            num.ms(r.previous_p95_ms),
            num.ms(r.slo_ms),
            MARKS[r.status],
        ]
        for r in card.routes
    ]
    header = ["route", "workflows", "calls", "p95", "previous p95", "SLO", "status"]
    return table(header, rows, frozenset({2, 3, 4, 5}))


def _targets() -> list[str]:
    return table(["figure", "target", "how it is graded"], [[t.title, t.target, t.grading] for t in TARGETS])


def render(card: Scorecard) -> str:
    scope = ", ".join(card.selected) if card.selected else "all workflows"
    lines = [
        "# AI scorecard",
        "",
        f"**Period** {card.window.label()} (UTC) against {card.previous_window.label()} · "
        f"**Scope** {scope} · **Policy** {card.policy_source} · "
        f"generated {card.generated_at:%Y-%m-%d %H:%M} UTC",
        "",
        "## Overall",
        "",
        *_figure_rows(card.of(OVERALL)),
        "",
        "## Status by workflow",
        "",
        *_matrix(card),
        "",
        "## Incidents",
        "",
        *_incidents(card),
        "",
        "## Spend against budget",
        "",
        *_budgets(card),
        "",
        "## Latency by route",
        "",
        *_routes(card),
    ]
    for workflow in card.workflows:
        lines += ["", f"## Workflow `{workflow}`", "", *_figure_rows(card.of(workflow))]
    lines += ["", "## Targets", "", *_targets(), ""]
    return "\n".join(lines)
