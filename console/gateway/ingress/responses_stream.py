"""Canonical stream events (chat.completion.chunk dicts, then End or Failed) as the Responses
API's typed server-sent events, each numbered by `sequence_number`.

    response.created, response.in_progress
    per text:      response.output_item.added (message), response.content_part.added,
                   response.output_text.delta …, response.output_text.done,
                   response.content_part.done, response.output_item.done
    per tool call: response.output_item.added (function_call),
                   response.function_call_arguments.delta …, …arguments.done,
                   response.output_item.done
    End:           response.completed (or response.incomplete), with output and usage
    Failed:        response.failed (status failed, the error), then `error`; never completed
"""

from __future__ import annotations

import time

import orjson

from console.gateway.ingress import responses_output as output
from console.gateway.ingress.responses_request import ResponsesRequest
from console.gateway.openai_api import ApiError
from console.providers.base import Body

DELTA_HEAD = (
    b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","sequence_number":'
)
DELTA_TAIL = b',"logprobs":[]}\n\n'


class ResponseEvents:
    """One streamed response: the events so far, and the response they add up to."""

    def __init__(self, request: ResponsesRequest, request_id: str) -> None:
        self.request, self.request_id = request, request_id
        self.created_at = time.time()
        self.sequence = 0
        self.items: list[Body] = []  # output items, in order; the open ones still growing
        self.text: list[str] | None = None  # the open message's text, while one is open
        self.calls: dict[int, Body] = {}  # open function_call items by the chunk's tool-call index
        self.model: str | None = None
        self.usage: Body | None = None
        self.finish: str | None = None
        self._delta_where: bytes | None = None  # the open message's place, as a delta event says it

    # -- the response they add up to ---------------------------------------------------------------

    def response(self, status: str | None = None, error: Body | None = None) -> Body:
        return output.response_object(
            self.request,
            self.request_id,
            model=self.model,
            output=self.items,
            usage=self.usage,
            finish=self.finish,
            status=status,
            error=error,
            created_at=self.created_at,
        )

    # -- events -------------------------------------------------------------------------------------

    def start(self) -> bytes:
        in_progress = self.response(status="in_progress")
        return self._event("response.created", response=in_progress) + self._event(
            "response.in_progress", response=in_progress
        )

    def chunk(self, chunk: Body) -> bytes:
        if isinstance(chunk.get("model"), str):
            self.model = chunk["model"]
        if chunk.get("usage"):
            self.usage = output.usage(chunk["usage"])
        events = b""
        for choice in chunk.get("choices") or ():
            if int(choice.get("index") or 0) != 0:
                continue  # the Responses API has one output per response
            delta = choice.get("delta") or {}
            if delta.get("content"):
                events += self._text_delta(str(delta["content"]))
            for tool_call in delta.get("tool_calls") or ():
                events += self._call_delta(tool_call)
            if choice.get("finish_reason"):
                self.finish = str(choice["finish_reason"])
        return events

    def end(self) -> bytes:
        """Close what is open, then the completed (or incomplete) response."""
        events = self._close_all()
        final = self.response()
        kind = "response.completed" if final["status"] == "completed" else "response.incomplete"
        return events + self._event(kind, response=final)

    def failed(self, error: ApiError) -> bytes:
        """The stream broke: the response failed, then the error; no item is closed as done."""
        detail = {"code": error.code or "server_error", "message": error.message}
        failed = self.response(status="failed", error=detail)
        return self._event("response.failed", response=failed) + self._event(
            "error", code=detail["code"], message=error.message, param=error.param
        )

    # -- message and function_call items --------------------------------------------------------------

    def _text_delta(self, piece: str) -> bytes:
        events = b""
        if self.text is None:
            events += self._close_calls()
            self.text = []
            item = output.message_item(self.request_id, "", status="in_progress")
            self.items.append({**item, "content": []})
            events += self._event(
                "response.output_item.added", output_index=self._index(), item=item | {"content": []}
            )
            events += self._event(
                "response.content_part.added", **self._where(), content_index=0, part=output.text_part("")
            )
        self.text.append(piece)
        return events + self._delta_event(piece)

    def _delta_event(self, piece: str) -> bytes:
        """`response.output_text.delta`, the hot event, from bytes made once per message."""
        if self._delta_where is None:
            where = orjson.dumps({**self._where(), "content_index": 0})
            self._delta_where = b"," + where[1:-1] + b',"delta":'
        sequence, self.sequence = self.sequence, self.sequence + 1
        return b"".join(
            (DELTA_HEAD, str(sequence).encode(), self._delta_where, orjson.dumps(piece), DELTA_TAIL)
        )

    def _close_text(self) -> bytes:
        if self.text is None:
            return b""
        text, self.text, self._delta_where = "".join(self.text), None, None
        status = "incomplete" if self.finish in output.INCOMPLETE else "completed"
        done = output.message_item(self.request_id, text, status)
        where = self._where()
        self.items[-1] = done
        part = done["content"][0]
        return (
            self._event("response.output_text.done", **where, content_index=0, text=text, logprobs=[])
            + self._event("response.content_part.done", **where, content_index=0, part=part)
            + self._event("response.output_item.done", output_index=where["output_index"], item=done)
        )

    def _call_delta(self, tool_call: Body) -> bytes:
        index = int(tool_call.get("index") or 0)
        function = tool_call.get("function") or {}
        events = b""
        item = self.calls.get(index)
        if item is None:
            events += self._close_text() + self._close_calls()
            head = {**tool_call, "function": {"name": function.get("name"), "arguments": ""}}
            item = output.function_call_item(self.request_id, index, head, status="in_progress")
            self.calls[index] = item
            self.items.append(item)
            events += self._event(
                "response.output_item.added", output_index=len(self.items) - 1, item=dict(item)
            )
        elif function.get("name"):
            item["name"] += str(function["name"])
        piece = str(function.get("arguments") or "")
        if piece:
            item["arguments"] += piece
            events += self._event(
                "response.function_call_arguments.delta",
                item_id=item["id"],
                output_index=self.items.index(item),
                delta=piece,
            )
        return events

    def _close_calls(self) -> bytes:
        events = b""
        for item in self.calls.values():
            item["status"] = "completed"
            where = {"item_id": item["id"], "output_index": self.items.index(item)}
            events += self._event(
                "response.function_call_arguments.done",
                **where,
                name=item["name"],
                arguments=item["arguments"],
            )
            events += self._event("response.output_item.done", output_index=where["output_index"], item=item)
        self.calls = {}
        return events

    def _close_all(self) -> bytes:
        return self._close_text() + self._close_calls()

    def _index(self) -> int:
        return len(self.items) - 1

    def _where(self) -> dict[str, object]:
        return {"item_id": self.items[-1]["id"], "output_index": self._index()}

    def _event(self, kind: str, **fields: object) -> bytes:
        data = orjson.dumps({"type": kind, "sequence_number": self.sequence, **fields})
        self.sequence += 1
        return b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n"
