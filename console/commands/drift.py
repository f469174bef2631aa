"""`fleetdeck drift`: the request it sends and how the answer prints.

The answer is the same JSON document whether the running instance's drift monitor
answered it over the admin API or an Engine opened here did (DriftMonitor.answer,
console/quality/monitor.py; the document is DriftRun.as_json).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

import orjson

from console.quality import drift


class ReportFormat(StrEnum):
    table = "table"
    json = "json"


def request(as_of: str | None, workflow: str | None) -> dict[str, Any]:
    return {"as_of": as_of, "workflow": workflow}


def render(doc: Mapping[str, Any], fmt: ReportFormat) -> str:
    if fmt is ReportFormat.json:
        return orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n"
    return render_table(doc)


def render_table(doc: Mapping[str, Any]) -> str:
    window, baseline = doc["window"], doc["baseline"]
    lines = [
        f"Drift: {window['start'][:16]} to {window['end'][:16]} (UTC) "
        f"against {baseline['start'][:16]} to {baseline['end'][:16]}",
        "",
    ]
    header = ("workflow", "metric", "component", "baseline", "current", "change", "test", "score", "level")
    rows = [_row(item) for item in doc["statistics"]]
    if not rows:
        lines.append("No traffic in these windows.")
    else:
        widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
        for cells in (header, *rows):
            lines.append("  ".join(str(cell).ljust(width) for cell, width in zip(cells, widths, strict=True)))
    alerts = doc["alerts"]
    lines.append("")
    lines.append(f"{len(alerts)} alerts" if alerts else "No alerts.")
    for alert in alerts:
        mark = "new" if alert["new"] else "raised before"
        lines.append(f"  [{alert['severity']}] ({mark}) {alert['message']}")
    return "\n".join(lines) + "\n"


def _row(item: Mapping[str, Any]) -> tuple[str, ...]:
    metric = item["metric"]
    return (
        item["workflow_id"],
        metric,
        item["component"] or "",
        drift.value_text(metric, item["baseline"]),
        drift.value_text(metric, item["current"]),
        "" if item["change"] is None else f"{item['change']:+.0%}",
        item["test"],
        "" if item["score"] is None else f"{item['score']:.3g}",
        item["level"],
    )
