"""The steps of one tool call, in the order console/mcp/pipeline.py runs them.

Each takes the ToolCall, does its one job, writes what it found back, or raises Refused,
a JSON-RPC error for the caller. Everything up to `approve` happens before the server
sees anything: a refused call never reaches it.
"""

from __future__ import annotations

import jsonschema
import mcp_types as types
import orjson
from mcp import MCPError
from pydantic import ValidationError

from console.gateway.approvals import HeldCall, new_approval_id
from console.gateway.openai_api import ApiError
from console.gateway.steps.context import CONTEXT_HEADERS, CONTEXT_KEYS
from console.mcp import screening
from console.mcp.access import Caller, split
from console.mcp.call import REFUSED, UPSTREAM_FAILED, Refused, ToolCall
from console.mcp.upstream import Unavailable

ANONYMOUS = "anonymous"


async def authenticate(call: ToolCall) -> None:
    """1 the virtual key, as for every other endpoint (console/gateway/keys.py)."""
    keys = call.services.keys
    if keys is None:
        return
    try:
        call.key = key = keys.authenticate(call.headers)
    except ApiError as error:
        raise Refused(REFUSED, error.message, "invalid_api_key", "blocked") from None
    call.trace.key_id, call.trace.environment = key.key_id, key.environment


async def read_context(call: ToolCall) -> None:
    """2 task, workflow, route (intent), step from the X-Fleetdeck-* headers, else `_meta`."""
    identify_context(call)


def identify_context(call: ToolCall) -> None:
    headers = call.headers
    context = {name: headers[header] for header, name in CONTEXT_HEADERS.items() if header in headers}
    for name in CONTEXT_KEYS & call.meta.keys():
        context.setdefault(name, str(call.meta[name]))
    trace = call.trace
    trace.workflow_id, trace.task_id = context.get("workflow"), context.get("task")
    trace.intent = trace.route = context.get("intent")
    trace.tier = context.get("tier")
    trace.trace_id = call.headers.get("x-fleetdeck-trace") or trace.request_id
    trace.parent_id = call.headers.get("x-fleetdeck-parent")
    step = context.get("step")
    trace.step = int(step) if step is not None and step.isdigit() else None
    key = call.key
    environment = key.environment if key else "dev"
    call.caller = Caller(environment, key.name if key else ANONYMOUS, trace.route)


async def find_tool(call: ToolCall) -> None:
    """4 `server__tool` → the supervised server and its tool."""
    parts = split(call.name)
    upstream = call.services.upstreams.get(parts[0]) if parts else None
    if parts is None or upstream is None:
        raise Refused(types.INVALID_PARAMS, f"Unknown tool {call.name!r}", "unknown_tool")
    call.upstream, call.trace.provider, call.trace.response_model = upstream, upstream.name, parts[1]
    call.tool = upstream.tools.get(parts[1])
    if call.tool is None and upstream.state != "up" and not upstream.tools:
        message = f"MCP server {upstream.name!r} is not up ({upstream.status}); try again shortly"
        raise Refused(UPSTREAM_FAILED, message, "upstream_unavailable")
    if call.tool is None:
        raise Refused(types.INVALID_PARAMS, f"Unknown tool {call.name!r}", "unknown_tool")


async def police(call: ToolCall) -> None:
    """3 least privilege: allowed, needs a human's approval, or refused (deny by default).
    On the name alone, before the tool is looked up: a caller learns nothing of the tools
    it may not call, not even whether they exist."""
    assert call.caller is not None
    parts = split(call.name)
    if parts is not None and parts[0] in call.services.upstreams:
        call.trace.provider, call.trace.response_model = parts
    key = call.key
    verdict = call.services.access.verdict(call.caller, call.name)
    if key is not None and not key.may_use(call.caller.route):
        verdict = "deny"
    call.verdict = verdict
    if verdict == "deny":
        call.decision = "not allowed"
        call.trace.reason_code = "tool-not-allowed"
        who = key.name if key else ANONYMOUS
        raise Refused(
            REFUSED, f"Tool {call.name!r} is not allowed for key {who!r}", "tool_not_allowed", "blocked"
        )


async def check_arguments(call: ToolCall) -> None:
    """5 the arguments against the tool's inputSchema, before the server sees them."""
    assert call.tool is not None
    arguments = {} if call.arguments is None else call.arguments
    if not isinstance(arguments, dict):
        raise Refused(types.INVALID_PARAMS, "'arguments' must be an object", "invalid_arguments")
    try:
        validator = jsonschema.validators.validator_for(call.tool.input_schema)(call.tool.input_schema)
        error = jsonschema.exceptions.best_match(validator.iter_errors(arguments))
    except jsonschema.exceptions.SchemaError as bad:
        message = f"Tool {call.name!r} declares an invalid inputSchema: {bad.message}"
        raise Refused(UPSTREAM_FAILED, message, "invalid_tool_schema") from None
    if error is not None:
        where = "/".join(str(part) for part in error.absolute_path) or "(root)"
        message = f"Arguments of {call.name!r} do not match its inputSchema at {where}: {error.message}"
        raise Refused(types.INVALID_PARAMS, message, "invalid_arguments")
    call.arguments = arguments


async def screen_arguments(call: ToolCall) -> None:
    """6 PII bound for a server marked remote: redacted, or the call refused, per the policy."""
    redacted, found = screening.redact(call.arguments)
    server = call.server
    call.trace.pii_redactions = sum(found.values()) or None
    if found:
        call.guard["pii"] = found
    if not server.remote or server.pii == "allow" or not found:
        call.sent = call.arguments
        return
    if server.pii == "block":
        kinds = ", ".join(sorted(found))
        message = f"The arguments hold personal data ({kinds}) and {call.trace.provider!r} is remote"
        raise Refused(REFUSED, message, "pii_blocked", "blocked")
    call.sent = redacted


async def approve(call: ToolCall) -> None:
    """7 a tool that needs a human waits in the approvals queue (the model tool calls' queue)."""
    if call.verdict != "approval":
        call.decision = "allowed"
        return
    approvals = call.services.approvals
    if approvals is None:
        call.decision = "not allowed"
        raise Refused(
            REFUSED,
            f"Tool {call.name!r} needs an approval and nobody can give one",
            "approval_denied",
            "blocked",
        )
    call.approval_id = new_approval_id()
    held = HeldCall(
        approval_id=call.approval_id,
        request_id=call.trace.request_id,
        route=call.trace.route,
        tool=call.name,
        arguments=orjson.dumps(screening.redact(call.sent)[0]).decode(),
        requested_by=call.key.name if call.key else ANONYMOUS,
    )
    decision, _ = await approvals.hold(held, call.server.approval_timeout_s)
    call.decision = decision
    if decision != "approved":
        raise Refused(
            REFUSED,
            f"Tool call {call.name!r} was {decision} ({call.approval_id})",
            "approval_denied",
            "blocked",
        )


async def execute(call: ToolCall) -> None:
    """8 the server's answer, under its timeout and its breaker."""
    assert call.upstream is not None and call.sent is not None
    upstream, timeout_s = call.upstream, call.server.timeout_s
    tool = call.name.partition("__")[2]
    try:
        call.result = await upstream.call(tool, call.sent, timeout_s)
    except TimeoutError:
        raise Refused(
            UPSTREAM_FAILED, f"{call.name!r} did not answer within {timeout_s:g} s", "upstream_timeout"
        ) from None
    except Unavailable as unavailable:
        raise Refused(UPSTREAM_FAILED, str(unavailable), "upstream_unavailable") from None
    except MCPError as error:
        lost = error.code == types.CONNECTION_CLOSED
        what = "went away during the call" if lost else f"refused: {error.message}"
        message = f"MCP server {upstream.name!r} {what}"
        raise Refused(UPSTREAM_FAILED, message, "connection_lost" if lost else "upstream_error") from None
    except (ValidationError, ValueError, RuntimeError) as garbage:
        kind = type(garbage).__name__
        message = f"MCP server {upstream.name!r} answered something that is not an MCP result ({kind})"
        raise Refused(UPSTREAM_FAILED, message, "upstream_garbage") from None
    trace = call.trace
    if call.result.is_error:
        trace.status, trace.error_type = "error", "tool_error"
    else:
        trace.status = "ok"
    trace.http_status = 200


async def screen_result(call: ToolCall) -> None:
    """9 prompt injection in the result (indirect injection): flagged, or withheld, per the policy."""
    assert call.result is not None
    call.guard["result_bytes"] = screening.result_size(call.result)
    found = screening.injection(call.result)
    call.trace.injection_score = round(found.score, 4)
    server = call.server
    if not found.blocked(server.injection_threshold):
        return
    call.guard["injection"] = found.to_json()
    call.trace.reason_code = "risk-high-flagged"
    if server.on_injection == "withhold":
        call.guard["withheld"] = True
        call.trace.status, call.trace.error_type = "blocked", "injection_withheld"
        note = (
            f"The result of {call.name!r} was withheld by Fleetdeck: it reads like a prompt injection "
            f"(score {found.score:.2f}, request {call.trace.request_id})."
        )
        call.reply = types.CallToolResult(content=[types.TextContent(text=note)], is_error=True)
