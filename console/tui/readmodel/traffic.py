"""The live request stream: the latest traces, a filter language, and one trace in full."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import duckdb
import pyarrow as pa

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
SINCE = "since"  # since:15m, since:1h, since:7d: only the traces of that last stretch
SINCE_UNITS = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1)}
FILTER_HELP = (
    "status:error  workflow:W  route:R  model:M  provider:P  key:K  session:S  since:1h  or free text"
)


class FilterError(ValueError):
    """A filter the user typed that names no known field."""


def parse_since(value: str) -> timedelta:
    """`15m`, `1h`, `7d` as a duration; a FilterError names the forms that work."""
    number, unit = value[:-1], value[-1:].lower()
    if unit not in SINCE_UNITS or not number.isdigit() or int(number) == 0:
        raise FilterError(f"filter: since:{value} is not a duration (since:15m, since:1h, since:7d)")
    return int(number) * SINCE_UNITS[unit]


@dataclass(frozen=True)
class TrafficFilter:
    fields: dict[str, str] = field(default_factory=dict)
    text: str | None = None
    since: str | None = None  # as typed, e.g. "1h"; the window ends at the console's now

    @classmethod
    def parse(cls, typed: str) -> TrafficFilter:
        """`status:error route:triage_ticket timeout` → exact fields plus free text."""
        try:
            words = shlex.split(typed)
        except ValueError as exc:
            raise FilterError(f"filter: {exc}") from None
        fields: dict[str, str] = {}
        free: list[str] = []
        since: str | None = None
        for word in words:
            name, sep, value = word.partition(":")
            if not sep or not value:
                free.append(word)
                continue
            if name.lower() == SINCE:
                parse_since(value)
                since = value
                continue
            if name.lower() not in FILTER_FIELDS:
                known = ", ".join(sorted({*FILTER_FIELDS, SINCE} - {"wf"}))
                raise FilterError(f"filter: no field {name!r} (fields: {known})")
            fields[FILTER_FIELDS[name.lower()]] = value
        return cls(fields, " ".join(free) or None, since)

    def params(self, limit: int, now: datetime | None = None) -> dict[str, object]:
        found: dict[str, object] = {**self.fields, "text": self.text, "limit": limit}
        if self.since is not None and now is not None:
            found["since"] = now - parse_since(self.since)
        return found

    def matches(self, trace: dict[str, Any], now: datetime | None = None) -> bool:
        """Whether a stored trace (its columns by name) passes this filter: what recent_traces's
        WHERE says, in Python, for rows the recorder pushes (`since:` counts back from `now`)."""
        for param, value in self.fields.items():
            if param == "model":
                if _model(trace) != value:
                    return False
            elif trace.get(PARAM_COLUMNS.get(param, param)) != value:
                return False
        if self.since is not None and now is not None:
            started = trace.get("ts_start")
            if started is None or started < now - parse_since(self.since):
                return False
        if self.text is not None:
            searched = [trace.get(c) for c in TEXT_COLUMNS]
            joined = " ".join(str(v) for v in searched if v is not None)
            if not _ilike(self.text).search(joined):
                return False
        return True

    def describe(self) -> str:
        parts = [f"{name}={value}" for name, value in self.fields.items()]
        if self.text:
            parts.append(repr(self.text))
        if self.since:
            parts.append(f"last {self.since}")
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


# recent_traces's parameters named otherwise than the column they match.
PARAM_COLUMNS = {"workflow": "workflow_id"}
# What the free text of a filter is searched in (recent_traces.sql's concat_ws), in order.
TEXT_COLUMNS = ("workflow_id", "route", "response_model", "request_model", "reason_code", "error_type")
ROW_FIELDS = tuple(StreamRow.__dataclass_fields__)


def _model(trace: dict[str, Any]) -> Any:
    """coalesce(response_model, request_model)"""
    answered = trace.get("response_model")
    return answered if answered is not None else trace.get("request_model")


def _ilike(text: str) -> re.Pattern[str]:
    """`ILIKE '%' || text || '%'` as a regular expression: `%` any run, `_` any one character."""
    body = "".join(".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in text)
    return re.compile(body, re.IGNORECASE | re.DOTALL)


def _order(row: StreamRow) -> tuple[datetime, str]:
    return (row.ts_start, row.request_id)


def pushed(
    traces: pa.Table, flt: TrafficFilter, limit: int = STREAM_CAP, now: datetime | None = None
) -> list[StreamRow]:
    """The rows of a flush's stored traces (the `traces` table's columns, as the recorder pushes
    them) that pass the filter, newest first, as recent_traces would answer them."""
    filtered = {PARAM_COLUMNS.get(param, param) for param in flt.fields}
    wanted = [c for c in {*ROW_FIELDS, *TEXT_COLUMNS, *filtered} if c in traces.column_names]
    found = []
    for trace in traces.select(wanted).to_pylist():
        if flt.matches(trace, now):
            trace["model"] = _model(trace)
            found.append(StreamRow(**{name: trace.get(name) for name in ROW_FIELDS}))
    found.sort(key=_order, reverse=True)
    return found[:limit]


def merged(shown: Sequence[StreamRow], new: Iterable[StreamRow], limit: int = STREAM_CAP) -> list[StreamRow]:
    """The rows shown with the new ones among them, newest first, each trace once, at most `limit`."""
    by_id = {row.request_id: row for row in shown}
    by_id.update((row.request_id, row) for row in new)
    rows = sorted(by_id.values(), key=_order, reverse=True)
    return rows[:limit]


def recent(
    cur: duckdb.DuckDBPyConnection, flt: TrafficFilter, limit: int = STREAM_CAP, now: datetime | None = None
) -> list[StreamRow]:
    """The newest `limit` traces matching the filter, newest first (`since:` counts back from `now`)."""
    table = queries.run(cur, "recent_traces", flt.params(limit, now))
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
    handoffs: list[dict[str, Any]] = field(default_factory=list)  # the task's handoffs, oldest first
    task: list[dict[str, Any]] = field(default_factory=list)  # the task's calls (its steps), in order
    verdicts: list[dict[str, Any]] = field(default_factory=list)  # judge's and humans', newest first
    audit: list[dict[str, Any]] = field(default_factory=list)  # the audit entries naming it, in order


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
        handoffs=task_handoffs(cur, row.get("task_id")),
        task=task_timeline(cur, row.get("task_id")),
        verdicts=queries.run(cur, "trace_verdicts", {"request_id": request_id}).to_pylist(),
        audit=queries.run(cur, "trace_audit", {"request_id": request_id}).to_pylist(),
    )


def task_timeline(cur: duckdb.DuckDBPyConnection, task_id: str | None) -> list[dict[str, Any]]:
    if not task_id:
        return []
    rows: list[dict[str, Any]] = queries.run(cur, "task_timeline", {"task_id": task_id}).to_pylist()
    return rows


def task_handoffs(cur: duckdb.DuckDBPyConnection, task_id: str | None) -> list[dict[str, Any]]:
    """The handoffs of the trace's task (queries/handoffs.sql), their provenance parsed."""
    if not task_id:
        return []
    found: list[dict[str, Any]] = queries.run(
        cur, "handoffs", {"task": task_id, "from": "2000-01-01"}
    ).to_pylist()
    for handoff in found:
        provenance = _json(handoff.get("provenance"))
        handoff["provenance"] = provenance if isinstance(provenance, dict) else {}
    return found


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
