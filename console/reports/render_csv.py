"""The scorecard as CSV: one row per workflow and figure."""

from __future__ import annotations

import csv
import io

from console.reports.scorecard import Scorecard

COLUMNS = (
    "period_from",
    "period_to",
    "workflow",
    "figure",
    "title",
    "unit",
    "value",
    "previous",
    "target",
    "status",
    "reading",
)


def _number(value: float | None) -> str:
    return "" if value is None else repr(float(value))


def render(card: Scorecard) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for f in card.figures:
        writer.writerow(
            (
                card.window.start.isoformat(),
                card.window.end.isoformat(),
                f.workflow,
                f.figure,
                f.target.title,
                f.target.unit,
                _number(f.value),
                _number(f.previous),
                f.target.target,
                f.status,
                f.reading,
            )
        )
    return out.getvalue()
