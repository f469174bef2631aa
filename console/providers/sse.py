"""An incremental decoder for server-sent events, fed with raw byte chunks.

Lean on purpose: it works on bytes (no text decoding of the framing), keeps only the
`event` and `data` fields, and returns whole events as they complete.
"""

from __future__ import annotations

from typing import NamedTuple


class SSEEvent(NamedTuple):
    event: bytes  # b"" when the event carried no `event:` field
    data: bytes


class SSEDecoder:
    """Feed chunks with `feed`; call `flush` at end of stream for an event lacking its blank line."""

    __slots__ = ("_buffer", "_data", "_event")

    def __init__(self) -> None:
        self._buffer = b""
        self._event = b""
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        buffer = self._buffer + chunk if self._buffer else chunk
        lines = buffer.split(b"\n")
        self._buffer = lines.pop()  # the unterminated tail, if any
        events: list[SSEEvent] = []
        for line in lines:
            event = self._line(line[:-1] if line.endswith(b"\r") else line)
            if event is not None:
                events.append(event)
        return events

    def flush(self) -> list[SSEEvent]:
        events = self.feed(b"\n") if self._buffer else []
        if self._data:
            events.append(self._dispatch())
        return events

    def _line(self, line: bytes) -> SSEEvent | None:
        if not line:
            if self._data:
                return self._dispatch()
            self._event = b""
            return None
        field, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if field == b"data":
            self._data.append(value)
        elif field == b"event":
            self._event = value
        # Comments (empty field), `id:` and `retry:` are of no use to a provider.
        return None

    def _dispatch(self) -> SSEEvent:
        data = self._data[0] if len(self._data) == 1 else b"\n".join(self._data)
        event = SSEEvent(self._event, data)
        self._event = b""
        self._data = []
        return event
