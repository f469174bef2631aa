"""A trace opens to its actions: copy as curl, and replay in the Playground."""

from __future__ import annotations

from datetime import datetime

import orjson
from textual.pilot import Pilot
from textual.widgets import Input

from console.engine import Engine
from console.tui.panes.playground import PlaygroundPane
from console.tui.screens.trace import TraceScreen

from .conftest import drive, offline_app, until

CHAT = {
    "model": "route:support",
    "messages": [
        {"role": "user", "content": "Where is my parcel?"},
        {"role": "assistant", "content": "Which order?"},
        {"role": "user", "content": "Order 1234"},
    ],
}


def with_payload(engine: Engine) -> str:
    """A chat trace of the sample store, given a kept (redacted) request."""
    cur = engine.db.cursor()
    (request_id,) = cur.execute(
        "SELECT request_id FROM traces WHERE operation = 'chat' AND route IS NOT NULL "
        "ORDER BY ts_start LIMIT 1"
    ).fetchall()[0]
    cur.execute(
        "INSERT INTO payloads VALUES (?, ?, ?, ?, NULL)",
        [request_id, request_id, datetime(2026, 11, 1), orjson.dumps(CHAT).decode()],
    )
    cur.execute("UPDATE traces SET payload_ref = ? WHERE request_id = ?", [request_id, request_id])
    return str(request_id)


def test_a_trace_replays_in_the_playground_and_copies_as_curl(console_engine: Engine) -> None:
    request_id = with_payload(console_engine)
    app = offline_app(console_engine)
    copied: list[str] = []
    app.copy_to_clipboard = copied.append  # type: ignore[method-assign]  # the terminal's clipboard

    async def scenario(pilot: Pilot[None]) -> None:
        app.push_screen(TraceScreen(app.context, request_id))
        await until(pilot, lambda: isinstance(app.screen, TraceScreen) and app.screen.detail is not None)
        await pilot.press("y")
        assert copied and "/v1/chat/completions" in copied[0] and "Order 1234" in copied[0]
        await pilot.press("p")
        playground = app.query_one(PlaygroundPane)
        await until(
            pilot, lambda: not isinstance(app.screen, TraceScreen) and playground.active, "the Playground"
        )
        assert app.query_one("#playground-input", Input).value == "Order 1234"
        assert playground.messages == CHAT["messages"][:2]
        assert playground.replay_model is not None and playground.replay_model.startswith("route:")

    drive(app, scenario)
