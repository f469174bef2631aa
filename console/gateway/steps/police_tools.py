"""Step 8b: the route's tool policy on the tool calls a model proposes: calls of tools the
route does not allow are removed and flagged; calls that need a human's approval wait in
the approvals queue (console.gateway.approvals) until approved, denied or the deadline."""

from __future__ import annotations

from console import guards
from console.gateway.approvals import HeldCall, new_approval_id
from console.gateway.call import Call
from console.policy import ToolPolicy
from console.providers.base import Body


async def police_tools(call: Call) -> None:
    tools = call.route.tools if call.route else None
    if tools is None or call.served is None:
        return
    verdicts: dict[str, str] = {}
    for choice in call.served.value.get("choices") or ():
        message = choice.get("message") or {}
        calls = message.get("tool_calls") or []
        kept = [tool_call for tool_call in calls if await _verdict(call, tool_call, tools, verdicts)]
        if len(kept) == len(calls):
            continue
        refused = [f"{name}: {verdict}" for name, verdict in verdicts.items() if verdict != "approved"]
        note = "Tool calls withheld by Fleetdeck (" + "; ".join(refused) + ")."
        message["content"] = f"{message.get('content') or ''}\n{note}".strip()
        message["tool_calls"] = kept or None
        if not kept and choice.get("finish_reason") == "tool_calls":
            choice["finish_reason"] = "stop"
    if verdicts and isinstance(call.trace.guard_results, dict):
        call.trace.guard_results["tools"] = verdicts
    flagged = [name for name, verdict in verdicts.items() if verdict == "not allowed"]
    if flagged:
        call.trace.reason_code = "risk-high-flagged"
        call.audit("guard.flagged", {"guard": "tool_policy", "tools": flagged})


async def _verdict(call: Call, tool_call: Body, tools: ToolPolicy, verdicts: dict[str, str]) -> bool:
    function = tool_call.get("function") or {}
    name = str(function.get("name"))
    if name in tools.allow:
        verdicts[name] = "allowed"
        return True
    approvals = call.services.approvals
    if name not in tools.approval or approvals is None:
        verdicts[name] = "not allowed"
        return False
    held = HeldCall(
        approval_id=new_approval_id(),
        request_id=call.trace.request_id,
        route=call.trace.route,
        tool=name,
        arguments=guards.redact(str(function.get("arguments") or ""))[0],
        requested_by=call.key.name if call.key else "anonymous",
    )
    verdict, _ = await approvals.hold(held, call.seconds_left())
    verdicts[name] = verdict
    return verdict == "approved"
