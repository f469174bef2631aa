"""What the store knows of handoffs: the source traces a handoff cites, and each handoff's state.

A handoff is recorded as audit entries (`handoff.accepted`, `handoff.refused`, `handoff.held`,
`handoff.consumed`): the audit log is their record, chained and signed with every other
decision, and the latest decision on a handoff id is its state.
"""

from __future__ import annotations

from collections.abc import Iterable

import duckdb

DECISIONS = ("handoff.accepted", "handoff.refused", "handoff.held")


def tasks_of(cur: duckdb.DuckDBPyConnection, request_ids: Iterable[str]) -> dict[str, str | None]:
    """The task of each stored trace among `request_ids` (missing ones are left out)."""
    ids = sorted(set(request_ids))
    if not ids:
        return {}
    rows = cur.execute("SELECT request_id, task_id FROM traces WHERE request_id IN ?", [ids]).fetchall()
    return {str(request_id): task for request_id, task in rows}


def states(cur: duckdb.DuckDBPyConnection) -> dict[str, tuple[str, str | None, str | None]]:
    """Every handoff's latest decision: id → (state, task, contract)."""
    rows = cur.execute(
        "SELECT subject, action, json_extract_string(payload, '$.task_id'), "
        "json_extract_string(payload, '$.contract') FROM audit_log "
        "WHERE action IN ? QUALIFY row_number() OVER (PARTITION BY subject ORDER BY seq DESC) = 1",
        [list(DECISIONS)],
    ).fetchall()
    return {
        str(subject): (str(action).removeprefix("handoff."), task, contract)
        for subject, action, task, contract in rows
    }
