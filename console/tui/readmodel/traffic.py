"""The live request stream: the latest traces, a filter language, and one trace in full."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import duckdb

from console.store import queries

STREAM_CAP = 1000
FILTER_FIELDS = {
    "status": "status",
    "workflow": "workflow",
    "wf": "workflow",
    "route": "route",
    "model": "model",
    "provider": "provider",
    "key": "key_id",
    "session": "session_id",
}
FILTER_HELP = "status:error  workflow:W  route:R  model:M  provider:P  key:K  session:S  or free text"


class FilterError(ValueError):
    """A filter the user typed that names no known field."""


@dataclass(frozen=True)
class TrafficFilter:
    fields: dict[str, str] = field(default_factory=dict)
    text: str | None = None

    @classmethod
    def parse(cls, typed: str) -> TrafficFilter:
        """`status:error route:triage_ticket timeout` → exact fields plus free text."""
        try:
            words = shlex.split(typed)
        except ValueError as exc:
            raise FilterError(f"filter: {exc}") from None
        fields: dict[str, str] = {}
        free: list[str] = []
        for word in words:
            name, sep, value = word.partition(":")
            if not sep or not value:
                free.append(word)
                continue
            if name.lower() not in FILTER_FIELDS:
                known = ", ".join(sorted(set(FILTER_FIELDS) - {"wf"}))
                raise FilterError(f"filter: no field {name!r} (fields: {known})")
            fields[FILTER_FIELDS[name.lower()]] = value
        return cls(fields, " ".join(free) or None)

    def params(self, limit: int) -> dict[str, object]:
        return {**self.fields, "text": self.text, "limit": limit}

    def describe(self) -> str:
        parts = [f"{name}={value}" for name, value in self.fields.items()]
        if self.text:
            parts.append(repr(self.text))
        return ", ".join(parts) or "all traffic"


@dataclass(frozen=True, slots=True)
class StreamRow:
    request_id: str
    ts_start: datetime
    workflow_id: str | None
    operation: str | None
    route: str | None
    model: str | None
    provider: str | None
    reason_code: str | None
    status: str
    error_type: str | None
    latency_ms: float | None
    input_tokens: int | None
    output_tokens: int | None
    cost_usd: float | None
    cache: str | None
    attempts: int | None
    key_id: str | None


def recent(cur: duckdb.DuckDBPyConnection, flt: TrafficFilter, limit: int = STREAM_CAP) -> list[StreamRow]:
    """The newest `limit` traces matching the filter, newest first."""
    table = queries.run(cur, "recent_traces", flt.params(limit))
    return [StreamRow(**row) for row in table.to_pylist()]


@dataclass(frozen=True)
class TraceDetail:
    """One trace: its columns, parsed attempt log and guard results, and its payload."""

    row: dict[str, Any]
    attempts: list[dict[str, Any]]
    guards: Any
    request: Any
    response: Any
    session: list[dict[str, Any]] = field(default_factory=list)  # the session's calls, in order


def detail(cur: duckdb.DuckDBPyConnection, request_id: str) -> TraceDetail | None:
    rows = queries.run(cur, "trace_detail", {"request_id": request_id}).to_pylist()
    if not rows:
        return None
    row = rows[0]
    attempts = _json(row.get("attempt_log"))
    return TraceDetail(
        row=row,
        attempts=attempts if isinstance(attempts, list) else [],
        guards=_json(row.get("guard_results")),
        request=_json(row.pop("payload_request", None)),
        response=_json(row.pop("payload_response", None)),
        session=session_timeline(cur, row.get("session_id")),
    )


def session_timeline(cur: duckdb.DuckDBPyConnection, session_id: str | None) -> list[dict[str, Any]]:
    if not session_id:
        return []
    rows: list[dict[str, Any]] = queries.run(cur, "session_timeline", {"session_id": session_id}).to_pylist()
    return rows


def _json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value
