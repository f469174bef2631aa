"""One `tools/call` through the MCP gateway: its state, its refusals, and its record.

Like a model call (console/gateway/call.py), a tool call owns its trace from the start and
records it once, in `finish()`: one Trace (operation `execute_tool`, protocol `mcp`; the
server is the trace's provider, `server__tool` its request model) and one audit entry
(`mcp.tool_call`), for allowed, refused, held and failed calls alike.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import mcp_types as types
from mcp import MCPError

from console.clock import utc_now
from console.gateway.approvals import ApprovalQueue
from console.gateway.keys import KeyRegistry, VirtualKey
from console.mcp import screening
from console.mcp.access import Access, Caller, Verdict
from console.mcp.upstream import Upstream
from console.policy import McpServerConfig
from console.store.audit import AuditEvent
from console.store.recorder import Recorder
from console.store.trace import Payload, Trace

# JSON-RPC error codes of the gateway's refusals (the -32000 to -32099 range is the
# implementation's; -32000 and -32001 are the SDK's own connection-closed and timeout).
REFUSED = -32010  # the policy, a human or a guard said no
UPSTREAM_FAILED = -32011  # the server could not answer: down, timed out, broken, breaker open
PRICE_SOURCE = "mcp_policy"


class Refused(MCPError):
    """A JSON-RPC error for the caller, with what the trace says about it."""

    def __init__(self, code: int, message: str, error_type: str, status: str = "error") -> None:
        super().__init__(code, message, {"error_type": error_type})
        self.error_type, self.status = error_type, status


@dataclass
class McpServices:
    """What every tool call uses: the Engine's parts, built once."""

    upstreams: Mapping[str, Upstream]
    access: Access
    recorder: Recorder
    keys: KeyRegistry | None  # None: no key needed (a trusted single-user box)
    approvals: ApprovalQueue | None = None


@dataclass
class ToolCall:
    services: McpServices
    headers: Mapping[str, str]
    name: str  # as the caller named it: `server__tool`
    arguments: Any
    meta: dict[str, Any]
    trace: Trace = field(init=False)
    started: float = field(default_factory=time.perf_counter)
    key: VirtualKey | None = None
    caller: Caller | None = None
    upstream: Upstream | None = None
    tool: types.Tool | None = None
    verdict: Verdict | None = None
    decision: str | None = None  # allowed | approved | denied | expired | not allowed
    approval_id: str | None = None
    sent: dict[str, Any] | None = None  # the arguments as the server sees them
    result: types.CallToolResult | None = None  # the server's answer
    reply: types.CallToolResult | None = None  # what the caller gets, when not the result
    guard: dict[str, Any] = field(default_factory=dict)
    recorded: bool = False

    def __post_init__(self) -> None:
        self.trace = Trace(
            operation="execute_tool",
            protocol="mcp",
            ts_start=utc_now(),
            status="error",  # until a success says otherwise
            stream=False,
            request_model=self.name,
        )

    @property
    def server(self) -> McpServerConfig:
        assert self.upstream is not None
        return self.upstream.config

    def seconds_left(self) -> float:
        return self.server.timeout_s - (time.perf_counter() - self.started)

    def refuse(self, error: Refused) -> Refused:
        self.trace.status, self.trace.error_type = error.status, error.error_type
        self.guard["error"] = {"code": error.code, "message": error.message}
        return error

    def finish(self) -> None:
        """Record the trace, its redacted payload and the call's audit entry, once."""
        if self.recorded:
            return
        self.recorded = True
        trace = self.trace
        trace.ts_end = utc_now()
        trace.latency_ms = (time.perf_counter() - self.started) * 1000
        trace.tool_calls = [self._tool_call()]
        trace.guard_results = {"mcp": self._decision(), **self.guard}
        if self.result is not None and self.upstream is not None:
            trace.cost_usd, trace.price_source = self.server.price_per_call, PRICE_SOURCE
        trace.payload_ref = trace.request_id
        result = self.result
        answered = result.model_dump(mode="json", by_alias=True, exclude_none=True) if result else None
        response = screening.redact(answered)[0]  # stored payloads are redacted, as the gateway's
        payload = Payload(
            payload_ref=trace.request_id,
            request_id=trace.request_id,
            request={"name": self.name, "arguments": screening.redact(self.arguments)[0]},
            response=response if self.guard.get("withheld") is None else {"withheld": True},
        )
        self.services.recorder.record(trace, payload)
        self.services.recorder.record_audit(self._audit_event())

    def _tool_call(self) -> dict[str, Any]:
        server, _, tool = self.name.partition("__")
        entry: dict[str, Any] = {"type": "mcp", "server": server, "tool": tool, "name": self.name}
        if self.result is not None:
            entry["is_error"] = bool(self.result.is_error)
            entry["result_bytes"] = self.guard.get("result_bytes")
        return entry

    def _decision(self) -> dict[str, Any]:
        found = {"decision": self.decision or "refused", "verdict": self.verdict}
        if self.approval_id:
            found["approval_id"] = self.approval_id
        return found

    def _audit_event(self) -> AuditEvent:
        key, trace = self.key, self.trace
        payload = {
            "request_id": trace.request_id,
            "tool": self.name,
            "decision": self.decision or "refused",
            "status": trace.status,
            "error_type": trace.error_type,
            "approval_id": self.approval_id,
            "task_id": trace.task_id,
            "workflow_id": trace.workflow_id,
        }
        return AuditEvent(
            actor=key.name if key else "anonymous",
            actor_kind="key" if key else "system",
            action="mcp.tool_call",
            subject=self.name,
            payload=payload,
        )
