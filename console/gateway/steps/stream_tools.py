"""Step 8b on a stream: the route's tool policy on the tool calls a streamed answer carries.

The relay (console.gateway.steps.relay) hands a chunk here once one of its chunks carried a
tool-call delta; everything before streams as it arrives, untouched. A tool call comes
in pieces: its id and name in its first delta, its arguments split over many, and the
calls of one choice may interleave by index, so a call is complete only when its choice
finishes. Until then its deltas are held; then every call of the choice is policed as
police_tools polices a JSON answer's (the same verdicts, trace flags and audit entries),
the calls that may pass are released in order, one delta each with the call whole and
indexes counted from 0, and the choice's finish follows with the finish reason of what
was released (`tool_calls` becomes `stop` when no call is left). A call of a tool the
route does not allow never reaches the client, not even its name: a note in the content
says how many were withheld. While a call waits for a human, KeepAlive events keep the
client's stream open (one at once, then every `stream_keep_alive_s` of the settings).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass, field

from console.gateway.call import Call, KeepAlive, StreamEvent
from console.gateway.steps.police_tools import (
    PASSED,
    ask_approval,
    note_verdicts,
    rule,
    tool_name,
    withheld_note,
)
from console.policy import ToolPolicy
from console.providers.base import NATIVE, Body

KEEP_ALIVE = KeepAlive()


@dataclass(slots=True)
class _Pieces:
    """One tool call as its deltas arrived."""

    id: str | None = None
    type: str | None = None
    name: str | None = None
    arguments: list[str] = field(default_factory=list)

    def add(self, delta: Body) -> None:
        self.id = self.id or delta.get("id")
        self.type = self.type or delta.get("type")
        function = delta.get("function") or {}
        self.name = self.name or function.get("name")
        if function.get("arguments"):
            self.arguments.append(str(function["arguments"]))

    def whole(self) -> Body:
        tool_call: Body = {"id": self.id, "type": self.type or "function"}
        tool_call["function"] = {"name": self.name, "arguments": "".join(self.arguments)}
        return {key: value for key, value in tool_call.items() if value is not None}


class StreamTools:
    """The tool policy of one streamed call. `text` is the relay's content per choice: the
    note on withheld calls is added to it, as the client receives it."""

    def __init__(
        self,
        call: Call,
        tools: ToolPolicy,
        text: dict[int, list[str]],
        wants_usage: bool,
    ) -> None:
        self.call, self.tools, self.text, self.wants_usage = call, tools, text, wants_usage
        self.active = False  # a tool-call delta was seen: every later chunk comes here
        self.waited_s = 0.0  # spent waiting for humans: the upstream's deadline does not count it
        self.verdicts: dict[str, str] = {}
        self.released: dict[int, list[Body]] = {}  # the calls the client received, per choice
        self._held: dict[int, dict[int, _Pieces]] = {}  # choice → tool-call index → pieces
        self._envelope: Body = {}  # the last chunk's id, model, …: for the chunks made here

    async def take(self, chunk: Body) -> AsyncGenerator[StreamEvent, None]:
        """The events for one upstream chunk: the chunk without its tool-call deltas, then, for
        each choice that finished with calls held, its policed calls and its finish."""
        self.active = True
        # From the first tool-call delta on, the client hears what the policy let through, in
        # the canonical form: the upstream's own events (passthrough) would carry every call.
        chunk.pop(NATIVE, None)
        self._envelope = {key: value for key, value in chunk.items() if key != "choices"}
        if self._envelope.get("usage") is not None:
            self._envelope["usage"] = None
        choices = chunk.get("choices") or []
        passing, finished = [], []
        for choice in choices:
            index, delta = int(choice.get("index") or 0), choice.get("delta") or {}
            had_calls = bool(delta.get("tool_calls"))  # some servers send `"tool_calls": null` with text
            if had_calls:
                self._hold(index, delta.pop("tool_calls"))
            if choice.get("finish_reason") and index in self._held:
                finished.append(choice)
            elif delta or choice.get("finish_reason") or not had_calls:
                passing.append(choice)
        if not choices:
            if self.wants_usage:
                yield chunk
        elif len(passing) == len(choices):
            yield chunk
        elif passing:
            yield {**self._envelope, "choices": passing}
        for position, choice in enumerate(finished):
            # The upstream's usage, when its finish chunk carries it, goes out once, with the last finish.
            tail = chunk if position == len(finished) - 1 else self._envelope
            released = self._release(int(choice.get("index") or 0), {**tail, "choices": [choice]})
            async with aclosing(released) as events:
                async for event in events:
                    yield event

    def note(self) -> None:
        """The verdicts on the trace, as police_tools notes a JSON answer's. Calls of a choice
        that never finished (the stream broke, or ended without a finish) were never sent."""
        for held in self._held.values():
            for pieces in held.values():
                self.verdicts.setdefault(str(pieces.name), "incomplete")
        note_verdicts(self.call, self.verdicts)

    def _hold(self, choice: int, deltas: list[Body]) -> None:
        held = self._held.setdefault(choice, {})
        for delta in deltas:
            held.setdefault(int(delta.get("index") or 0), _Pieces()).add(delta)

    async def _release(self, index: int, finish: Body) -> AsyncGenerator[StreamEvent, None]:
        """Police the choice's held calls in order; send the ones that pass, the note, the finish."""
        held = self._held.pop(index)
        kept: list[Body] = []
        refused: list[str] = []
        blocked = 0  # calls of tools the route does not allow: their names never reach the client
        for tool_call in (held[position].whole() for position in sorted(held)):
            name = tool_name(tool_call)
            found: str = rule(self.call, name, self.tools)
            if found == "approval":
                decided: list[str] = []
                async with aclosing(self._wait_for_human(tool_call, decided)) as waiting:
                    async for keep_alive in waiting:
                        yield keep_alive
                found = decided[0]
            self.verdicts[name] = found
            if found in PASSED:
                kept.append(tool_call)
            elif found == "not allowed":
                blocked += 1
            else:
                refused.append(f"{name}: {found}")
        for position, tool_call in enumerate(kept):
            yield self._made(index, {"tool_calls": [{"index": position, **tool_call}]})
        self.released.setdefault(index, []).extend(kept)
        refused = [f"{blocked} not allowed"] * bool(blocked) + refused
        if refused:
            yield self._made(index, {"content": self._note(index, refused)})
        choice = finish["choices"][0]
        if not kept and choice.get("finish_reason") == "tool_calls":
            choice["finish_reason"] = "stop"
        yield finish

    async def _wait_for_human(self, tool_call: Body, decided: list[str]) -> AsyncGenerator[KeepAlive, None]:
        """Hold the call for approval, with a KeepAlive at once and then every `stream_keep_alive_s`."""
        started = time.perf_counter()
        asking = asyncio.ensure_future(ask_approval(self.call, tool_call))
        try:
            await asyncio.sleep(0)  # the call is in the queue before the client hears it is held
            while not asking.done():
                yield KEEP_ALIVE
                await asyncio.wait({asking}, timeout=self.call.services.stream_keep_alive_s)
            decided.append(asking.result())
        finally:
            asking.cancel()  # the client went away: the held call leaves the queue
            self.waited_s += time.perf_counter() - started

    def _made(self, index: int, delta: Body) -> Body:
        """A chunk of Fleetdeck's own in the stream's envelope (id, model, …)."""
        return {**self._envelope, "choices": [{"index": index, "delta": delta, "finish_reason": None}]}

    def _note(self, index: int, refused: list[str]) -> str:
        """Why calls are missing, as police_tools says it in a JSON answer's content."""
        note = withheld_note(refused)
        note = f"\n{note}" if self.text.get(index) else note
        self.text.setdefault(index, []).append(note)
        return note
