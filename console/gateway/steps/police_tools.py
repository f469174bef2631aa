"""Step 8b: the route's tool policy on the tool calls a model proposes: calls of tools the
route does not allow are removed and flagged; calls that need a human's approval wait in
the approvals queue (console.gateway.approvals) until approved, denied or the deadline.

The verdicts and what the trace says about them are shared with the stream's tool policy
(console.gateway.steps.stream_tools), which applies them to a streamed answer.
"""

from __future__ import annotations

from typing import Literal

from console import guards
from console.gateway.approvals import HeldCall, new_approval_id
from console.gateway.call import Call
from console.policy import ToolPolicy
from console.providers.base import Body

Rule = Literal["allowed", "not allowed", "approval"]
PASSED = ("allowed", "approved")
DECIDED_NO = ("denied", "expired")  # by a human, or by no one in time


async def police_tools(call: Call) -> None:
    tools = call.route.tools if call.route else None
    if tools is None or call.served is None:
        return
    verdicts: dict[str, str] = {}
    for choice in call.served.value.get("choices") or ():
        message = choice.get("message") or {}
        calls = message.get("tool_calls") or []
        kept = [tool_call for tool_call in calls if await verdict(call, tool_call, tools, verdicts)]
        if len(kept) == len(calls):
            continue
        message["content"] = f"{message.get('content') or ''}\n{withheld_note(refusals(verdicts))}".strip()
        message["tool_calls"] = kept or None
        if not kept and choice.get("finish_reason") == "tool_calls":
            choice["finish_reason"] = "stop"
    note_verdicts(call, verdicts)


def refusals(verdicts: dict[str, str]) -> list[str]:
    """Why calls were withheld, as the client may read it: tools the route does not allow are
    counted, never named (their names are the route's secret); refusals by humans are named."""
    blocked = sum(1 for verdict in verdicts.values() if verdict == "not allowed")
    decided = [f"{name}: {verdict}" for name, verdict in verdicts.items() if verdict in DECIDED_NO]
    return [f"{blocked} not allowed"] * bool(blocked) + decided


def withheld_note(refused: list[str]) -> str:
    """What the client reads in the content about the calls it did not get."""
    return "Tool calls withheld by Fleetdeck (" + "; ".join(refused) + ")."


def tool_name(tool_call: Body) -> str:
    return str((tool_call.get("function") or {}).get("name"))


def rule(call: Call, name: str, tools: ToolPolicy) -> Rule:
    """What the route says of a call of `name`, before anyone is asked."""
    if name in tools.allow:
        return "allowed"
    if name in tools.approval and call.services.approvals is not None:
        return "approval"
    return "not allowed"


async def verdict(call: Call, tool_call: Body, tools: ToolPolicy, verdicts: dict[str, str]) -> bool:
    """Whether `tool_call` may reach the client; its verdict goes into `verdicts` by tool name."""
    name = tool_name(tool_call)
    found = rule(call, name, tools)
    verdicts[name] = await ask_approval(call, tool_call) if found == "approval" else found
    return verdicts[name] in ("allowed", "approved")


async def ask_approval(call: Call, tool_call: Body) -> str:
    """Hold the call in the approvals queue: "approved", "denied" or "expired" (the deadline)."""
    approvals = call.services.approvals
    assert approvals is not None
    function = tool_call.get("function") or {}
    held = HeldCall(
        approval_id=new_approval_id(),
        request_id=call.trace.request_id,
        route=call.trace.route,
        tool=tool_name(tool_call),
        arguments=guards.redact(str(function.get("arguments") or ""))[0],
        requested_by=call.key.name if call.key else "anonymous",
    )
    decision, _ = await approvals.hold(held, call.seconds_left())
    return decision


def note_verdicts(call: Call, verdicts: dict[str, str]) -> None:
    """The verdicts on the trace; calls of tools the route does not allow flag it and are audited."""
    if verdicts and isinstance(call.trace.guard_results, dict):
        call.trace.guard_results["tools"] = verdicts
    flagged = [name for name, verdict in verdicts.items() if verdict == "not allowed"]
    if flagged:
        call.trace.reason_code = "risk-high-flagged"
        call.audit("guard.flagged", {"guard": "tool_policy", "tools": flagged})
