"""The scorecard as JSON; docs/scorecard.schema.json documents the shape."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import orjson

from console.reports.period import Window
from console.reports.scorecard import Scorecard
from console.reports.targets import TARGETS

SCHEMA_ID = "fleetdeck.scorecard/1"


def _window(window: Window) -> dict[str, Any]:
    return {"from": window.start.isoformat(), "to": window.end.isoformat(), "days": window.days}


def to_dict(card: Scorecard) -> dict[str, Any]:
    return {
        "schema": SCHEMA_ID,
        "generated_at": card.generated_at.isoformat(),
        "period": _window(card.window),
        "previous_period": _window(card.previous_window),
        "workflows": list(card.workflows),
        "selected_workflows": list(card.selected) if card.selected else None,
        "policy": card.policy_source,
        "figures": [
            {
                "workflow": f.workflow,
                "figure": f.figure,
                "title": f.target.title,
                "unit": f.target.unit,
                "value": f.value,
                "previous": f.previous,
                "target": f.target.target,
                "status": f.status,
                "reading": f.reading,
                "detail": dict(f.detail),
            }
            for f in card.figures
        ],
        "incidents": [
            {**asdict(i), "ts": i.ts.isoformat(), "workflows": list(i.workflows)} for i in card.incidents
        ],
        "budgets": [{**asdict(b), "used": b.used} for b in card.budgets],
        "routes": [{**asdict(r), "workflows": list(r.workflows)} for r in card.routes],
        "quality_trend": [{**asdict(q), "bucket_start": q.bucket_start.isoformat()} for q in card.quality],
        "daily": [{**asdict(d), "day": d.day.isoformat()} for d in card.daily],
        "targets": [asdict(t) for t in TARGETS],
    }


def render(card: Scorecard) -> str:
    return orjson.dumps(to_dict(card), option=orjson.OPT_INDENT_2).decode() + "\n"
