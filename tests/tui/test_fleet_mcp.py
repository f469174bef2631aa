"""The Fleet pane's MCP servers: listed only when the policy names some, with their recorded calls."""

from __future__ import annotations

from textual.pilot import Pilot
from textual.widgets import DataTable

from console.engine import Engine
from console.policy import parse_policy
from console.store.trace import Trace

from .conftest import FROZEN_NOW, drive, loaded, offline_app, show

POLICY = """
providers:
  local: {kind: local}
mcp_servers:
  notes: {command: notes-server}
  crm: {url: "http://127.0.0.1:9100/mcp", remote: true}
"""


def tool_call(tool: str, status: str) -> Trace:
    server = tool.partition("__")[0]
    return Trace(
        ts_start=FROZEN_NOW,
        operation="execute_tool",
        protocol="mcp",
        provider=server,
        request_model=tool,
        status=status,
    )


def test_fleet_lists_mcp_servers_with_their_calls(console_engine: Engine) -> None:
    console_engine.policy = parse_policy(POLICY)
    console_engine.start_recorder()
    for trace in (
        tool_call("notes__read", "ok"),
        tool_call("notes__read", "blocked"),
        tool_call("crm__lookup", "error"),
    ):
        console_engine.recorder.record(trace)
    assert console_engine.recorder.flush()
    app = offline_app(console_engine)

    async def scenario(pilot: Pilot[None]) -> None:
        await loaded(pilot, await show(pilot, "3", "fleet"))
        servers = app.query_one("#fleet-mcp", DataTable)
        rows = {
            str(servers.get_row_at(i)[0]): [str(cell) for cell in servers.get_row_at(i)] for i in range(2)
        }
        assert rows["notes"][1:3] == ["stdio", "not running"]
        assert rows["notes"][4:] == ["2", "1", "0"]
        assert rows["crm"][1] == "streamable_http, remote"
        assert rows["crm"][4:] == ["1", "0", "1"]

    drive(app, scenario)


def test_fleet_has_no_mcp_section_without_mcp_servers(console_engine: Engine) -> None:
    app = offline_app(console_engine)

    async def scenario(pilot: Pilot[None]) -> None:
        await loaded(pilot, await show(pilot, "3", "fleet"))
        assert not app.query("#fleet-mcp")

    drive(app, scenario)
