"""The trace view shows its task's handoffs as chains: source calls → payload → gate → consumers."""

from __future__ import annotations

from console.engine import Engine
from console.store import audit
from console.store.audit import AuditEvent
from console.tui.readmodel import traffic
from console.tui.screens.trace import handoffs_text


def event(actor: str, kind: str, action: str, payload: dict[str, object]) -> AuditEvent:
    return AuditEvent(actor=actor, actor_kind=kind, action=action, subject="hof_1", payload=payload)


def test_a_traces_task_shows_its_handoffs_with_each_fields_sources(console_engine: Engine) -> None:
    cur = console_engine.db.cursor()
    request_id, task = cur.execute(
        "SELECT request_id, task_id FROM traces WHERE task_id IS NOT NULL ORDER BY ts_start LIMIT 1"
    ).fetchall()[0]
    handoff = {
        "contract": "triage_to_reply",
        "task_id": task,
        "gate": {"kind": "approval"},
        "provenance": {"category": [request_id], "summary": ["req-other"]},
        "payload_sha256": "ab" * 32,
        "problem": None,
    }
    audit.append(
        cur,
        [
            event("app", "key", "handoff.held", handoff),
            event("ops@box", "human", "handoff.accepted", handoff),
            event("gateway", "system", "handoff.consumed", {"request_id": "req-next"}),
        ],
    )
    found = traffic.detail(cur, request_id)
    assert found is not None
    (shown,) = found.handoffs
    assert (shown["status"], shown["submitted_by"], shown["decided_by"], shown["consumed_by_calls"]) == (
        "accepted",
        "app",
        "ops@box",
        1,
    )
    text = handoffs_text(found.handoffs, request_id)
    assert "hof_1  triage_to_reply  gate approval → accepted  by ops@box  → consumed by 1 call(s)" in text
    assert f"category ← ▶{request_id}" in text and "summary ← req-other" in text
    assert handoffs_text([], request_id) == "no handoff in this task"
