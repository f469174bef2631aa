"""`fleetdeck drift`: the request it sends, how the Engine answers it, and how the answer prints.

The answer is the same JSON document whether the command ran the Engine itself or asked
the running instance over its admin API (console/quality/monitor.DriftRun.as_json).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import orjson

from console.gateway.openai_api import ApiError
from console.quality import drift
from console.quality.monitor import DriftMonitor

if TYPE_CHECKING:
    from console.engine import Engine


class ReportFormat(StrEnum):
    table = "table"
    json = "json"


def parse_as_of(text: str | None) -> datetime | None:
    """An ISO date or date-time (UTC unless it names an offset) as naive UTC; None for now."""
    if text is None or not text.strip():
        return None
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ApiError(
            400, f"--as-of {text!r}: expected an ISO date or date-time, e.g. 2026-10-19 or 2026-10-19T09:30"
        ) from None
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


def request(as_of: str | None, workflow: str | None) -> dict[str, Any]:
    return {"as_of": as_of, "workflow": workflow}


def answer_for(engine: Engine, asked: dict[str, object]) -> dict[str, Any]:
    return answer(engine.drift, asked)


def answer(monitor: DriftMonitor, asked: Mapping[str, Any]) -> dict[str, Any]:
    as_of, workflow = asked.get("as_of"), asked.get("workflow")
    if as_of is not None and not isinstance(as_of, str):
        raise ApiError(400, "as_of must be an ISO date or date-time string")
    if workflow is not None and not isinstance(workflow, str):
        raise ApiError(400, "workflow must be a string")
    return monitor.run(parse_as_of(as_of), workflow or None).as_json()


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
