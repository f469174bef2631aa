"""A tool call through the MCP gateway: the ordered steps, and the per-key tool listing.

Every `tools/call` yields exactly one trace and one audit entry (`ToolCall.finish`), be it
answered, refused, held and denied, or failed.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import mcp_types as types

from console.clock import utc_now
from console.mcp import steps
from console.mcp.access import namespaced
from console.mcp.call import McpServices, Refused, ToolCall
from console.mcp.upstream import Upstream
from console.store.trace import MCP_METHODS

Step = Callable[[ToolCall], Awaitable[None]]

STEPS: tuple[Step, ...] = (
    steps.authenticate,  # 1 the virtual key
    steps.read_context,  # 2 task, workflow, route
    steps.police,  # 3 allowed, approval, or refused (deny by default), on the name alone
    steps.find_tool,  # 4 server__tool → server and tool
    steps.check_arguments,  # 5 the tool's inputSchema
    steps.screen_arguments,  # 6 PII toward remote servers
    steps.approve,  # 7 a human's decision, when the tool needs one
    steps.execute,  # 8 under the server's timeout and breaker
    steps.screen_result,  # 9 injection in the result: flag or withhold
)


class McpGateway(McpServices):
    """The MCP gateway's parts, and one tool call (or listing) through them."""

    async def call_tool(
        self, headers: Mapping[str, str], name: str, arguments: Any, meta: Mapping[str, Any] | None
    ) -> types.CallToolResult:
        """The caller's result; raises Refused (a JSON-RPC error) when the call is refused or fails."""
        call = ToolCall(self, headers, name, arguments, dict(meta or {}))
        try:
            for step in STEPS:
                await step(call)
            assert call.result is not None
            return call.reply or call.result
        except Refused as error:
            raise call.refuse(error) from None
        finally:
            call.finish()  # 10 record

    def protocol_request(
        self, headers: Mapping[str, str], method: str, http_status: int, started: float
    ) -> None:
        """The one trace of a request that calls no tool (initialize, tools/list, ping, a
        notification): operation `mcp:<method>` (console.store.trace.MCP_METHODS, else
        `mcp:other`), no payload, no audit entry."""
        call = ToolCall(self, headers, method, None, {})
        _identify(call)
        steps.identify_context(call)
        trace = call.trace
        trace.operation = f"mcp:{method if method in MCP_METHODS else 'other'}"
        trace.request_model = None
        trace.status, trace.http_status = ("ok" if http_status < 400 else "error"), http_status
        trace.ts_end = utc_now()
        trace.latency_ms = (time.perf_counter() - started) * 1000
        self.recorder.record(trace)

    def refused_request(self, headers: Mapping[str, str], error: Refused) -> None:
        """The one trace (and audit entry) of a tools/call the SDK refused before it reached us."""
        call = ToolCall(self, headers, "(malformed)", None, {})
        _identify(call)
        steps.identify_context(call)
        call.refuse(error)
        call.finish()

    async def list_tools(
        self, headers: Mapping[str, str], meta: Mapping[str, Any] | None
    ) -> list[types.Tool]:
        """The tools this caller may call (or call after an approval), namespaced `server__tool`."""
        call = ToolCall(self, headers, "(tools/list)", None, dict(meta or {}))
        await steps.authenticate(call)
        await steps.read_context(call)
        assert call.caller is not None
        listed = []
        for upstream in self.upstreams.values():
            for tool in upstream.tools.values():
                name = namespaced(upstream.name, tool.name)
                verdict = self.access.verdict(call.caller, name)
                if call.key is not None and not call.key.may_use(call.caller.route):
                    verdict = "deny"
                if verdict != "deny":
                    listed.append(_offered(upstream, tool, name, verdict == "approval"))
        return listed

    def input_schema(self, name: str) -> Mapping[str, Any] | None:
        server, _, tool = name.partition("__")
        upstream = self.upstreams.get(server)
        found = upstream.tools.get(tool) if upstream else None
        return found.input_schema if found else None


def _identify(call: ToolCall) -> None:
    keys = call.services.keys
    if keys is not None:
        with contextlib.suppress(Exception):
            call.key = keys.authenticate(call.headers)
            call.trace.key_id, call.trace.environment = call.key.key_id, call.key.environment


def _offered(upstream: Upstream, tool: types.Tool, name: str, needs_approval: bool) -> types.Tool:
    notes = []
    if upstream.status != "up":
        notes.append(f"[{upstream.status}]")
    if needs_approval:
        notes.append("[needs a human's approval]")
    description = " ".join([*notes, tool.description or ""]).strip() or None
    return tool.model_copy(update={"name": name, "description": description})
