"""A streamed reply written to its client in one write per upstream read.

The events of a stream come in bursts: every event a provider decodes from one upstream
read is relayed without the loop in between. The stream's events are drawn on a task of
their own and buffered; the writer sends what the buffer holds whenever that task waits,
so a burst costs one ASGI message and one socket write instead of one per event. The
bytes the client reads are the same; only the HTTP chunks that carry them are fewer.

As with Starlette's StreamingResponse: a client that goes away cancels the drawing of the
events (the relay traces it as `client_disconnected`); a writer held up by a slow client
holds the events up too, once MAX_PENDING_BYTES are waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from starlette.types import Receive, Send

MAX_PENDING_BYTES = 65_536  # drawn and not yet written: more waits for the writer


async def write_stream(
    status: int,
    headers: list[tuple[bytes, bytes]],
    events: AsyncIterator[bytes],
    receive: Receive,
    send: Send,
) -> None:
    """Send the response start, then the events as they come, until they end or the client leaves."""
    await send({"type": "http.response.start", "status": status, "headers": headers})
    writer = _BatchedWriter(send)
    drawing = asyncio.ensure_future(writer.draw(events))
    drawing.add_done_callback(writer.wake)
    watching = asyncio.ensure_future(_client_left(receive))
    watching.add_done_callback(lambda _: drawing.cancel())
    try:
        await writer.write_until(drawing)
    finally:
        watching.cancel()
        if not drawing.done():  # the writer failed or this request was cancelled: stop the events too
            drawing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await drawing


async def _client_left(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


class _BatchedWriter:
    def __init__(self, send: Send) -> None:
        self._send = send
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._ready = asyncio.Event()  # something to write, or the drawing ended
        self._room = asyncio.Event()  # the buffer is below MAX_PENDING_BYTES again

    def wake(self, _: object = None) -> None:
        self._ready.set()

    async def draw(self, events: AsyncIterator[bytes]) -> None:
        async for event in events:
            self._pending.append(event)
            self._pending_bytes += len(event)
            self._ready.set()
            if self._pending_bytes >= MAX_PENDING_BYTES:
                self._room.clear()
                await self._room.wait()

    async def write_until(self, drawing: asyncio.Future[None]) -> None:
        """Write each batch as the drawing waits; the last one ends the body. A drawing cancelled
        because the client left leaves the response as it is; one that failed raises here, after
        what it drew is written."""
        while True:
            await self._ready.wait()
            self._ready.clear()
            ended = drawing.done()
            if ended and drawing.cancelled():
                return
            failed = ended and drawing.exception() is not None  # the body is cut, not ended
            if self._pending or (ended and not failed):
                await self._write(more=not ended or failed)
            if ended:
                drawing.result()
                return

    async def _write(self, more: bool) -> None:
        body = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending, self._pending_bytes = [], 0
        self._room.set()
        await self._send({"type": "http.response.body", "body": body, "more_body": more})
