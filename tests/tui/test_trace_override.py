"""The trace view shows the call's verdicts, its task's steps and the audit entries naming it,
and overrides the verdict: a human eval row and one audit entry, shown at once."""

from __future__ import annotations

from textual.pilot import Pilot
from textual.widgets import Input, Static

from console.engine import Engine
from console.tui.screens.trace import TraceScreen

from .conftest import drive, offline_app, until


def text_of(screen: TraceScreen, selector: str) -> str:
    return str(screen.query_one(selector, Static).render())


def test_a_judged_trace_shows_its_verdict_steps_and_audit_and_is_overridden(console_engine: Engine) -> None:
    cur = console_engine.db.cursor()
    request_id, task_id, verdict = cur.execute(
        "SELECT t.request_id, t.task_id, e.verdict FROM traces t JOIN evals e USING (request_id) "
        "WHERE e.evaluator LIKE 'judge:%' AND t.task_id IS NOT NULL ORDER BY t.ts_start LIMIT 1"
    ).fetchall()[0]
    (steps,) = cur.execute("SELECT count(*) FROM traces WHERE task_id = ?", [task_id]).fetchall()[0]
    app = offline_app(console_engine)

    async def scenario(pilot: Pilot[None]) -> None:
        screen = TraceScreen(app.context, request_id)
        app.push_screen(screen)
        await until(pilot, lambda: screen.detail is not None, "the trace")
        assert f"{verdict:<9}" in text_of(screen, "#trace-verdicts")
        assert "by judge:" in text_of(screen, "#trace-verdicts")
        assert f"{steps} steps" in text_of(screen, "#trace-task")
        assert "▶" in text_of(screen, "#trace-task")
        assert "no audit entry names this call" in text_of(screen, "#trace-audit")
        await pilot.press("o")
        await until(pilot, lambda: bool(app.screen.query("#override-verdict")), "the override dialog")
        dialog = app.screen
        assert dialog.query_one("#override-request", Input).value == request_id
        assert dialog.query_one("#override-verdict", Input).has_focus
        await pilot.press(*"fail", "tab", *"refund sent to the wrong account", "enter")
        await until(pilot, lambda: app.screen is screen, "the dialog to close")
        await until(
            pilot,
            lambda: screen.detail is not None and any(v["human"] for v in screen.detail.verdicts),
            "the override to show",
        )
        shown = text_of(screen, "#trace-verdicts")
        assert "▶" in shown and "incorrect" in shown and "refund sent to the wrong account" in shown
        audited = text_of(screen, "#trace-audit")
        assert "override" in audited and "by console:" in audited

    drive(app, scenario)
    rows = cur.execute(
        "SELECT evaluator, verdict, rationale FROM evals WHERE request_id = ? AND evaluator LIKE 'human:%'",
        [request_id],
    ).fetchall()
    assert len(rows) == 1 and rows[0][1:] == ("incorrect", "refund sent to the wrong account")
    (audited,) = cur.execute(
        "SELECT count(*) FROM audit_log WHERE action = 'override' AND subject = ?", [request_id]
    ).fetchall()[0]
    assert audited == 1
