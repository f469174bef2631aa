"""The gateway's ASGI entry: a model call (a POST to an ingress adapter's path) is answered
here as plain ASGI, every other request (and the lifespan) goes on to the Starlette app of
console.gateway.server.

Model calls are the hot path: Starlette's router, its two exception middlewares, its
Request and its StreamingResponse's task group cost more per call than the gateway's own
steps. What a client sees is what the Starlette route answered: the same status, headers
and bytes (built by Starlette's Response), the same handlers for an error that escapes.
A stream is written in one write per upstream read (console.gateway.stream_writer).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from console.gateway.ingress import Ingress, Reply
from console.gateway.openai_api import MAX_BODY_BYTES
from console.gateway.pipeline import Gateway
from console.gateway.stream_writer import write_stream
from console.store.recorder import RecorderUnavailable

JSON = "application/json"
ErrorHandler = Callable[[Request, Exception], Awaitable[Response]]


class ModelCall:
    """One ingress adapter's operation as an ASGI app: the body read, the call, the reply sent."""

    def __init__(self, gateway: Gateway, ingress: Ingress) -> None:
        self._gateway, self._ingress = gateway, ingress

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = await read_body(receive)
        headers = Headers(scope=scope)
        reply = await self._gateway.handle(self._ingress, raw, headers, _disconnect_waiter(receive))
        await _answer(reply, scope, receive, send)


class ModelCalls:
    """The ASGI app: model calls through their `ModelCall`, the rest through `app`. `unrecorded`
    and `crash` answer an exception that escapes a call, as the Starlette app's handlers do."""

    def __init__(
        self,
        calls: Iterable[tuple[str, ModelCall]],
        app: ASGIApp,
        unrecorded: ErrorHandler,
        crash: ErrorHandler,
    ) -> None:
        self._calls, self._app = dict(calls), app
        self._unrecorded, self._crash = unrecorded, crash

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        call = None
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            call = self._calls.get(scope["path"])
        if call is None:
            await self._app(scope, receive, send)
            return
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            await call(scope, receive, sending)
        except Exception as exc:
            request = Request(scope, receive)
            if isinstance(exc, RecorderUnavailable) and not started:  # as Starlette's ExceptionMiddleware
                await (await self._unrecorded(request, exc))(scope, receive, send)
                return
            response = await self._crash(request, exc)  # as its ServerErrorMiddleware: answer, then raise
            if not started:
                await response(scope, receive, send)
            raise


async def read_body(receive: Receive) -> bytes:
    """The body, stopping one message past the limit so a huge body is refused, not buffered."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        if message["type"] != "http.request":
            continue
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_BODY_BYTES or not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _disconnect_waiter(receive: Receive) -> Callable[[], Awaitable[None]]:
    async def wait() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    return wait


async def _answer(reply: Reply, scope: Scope, receive: Receive, send: Send) -> None:
    if reply.stream is None:
        response = Response(reply.body, status_code=reply.status, headers=reply.headers, media_type=JSON)
        await response(scope, receive, send)
        return
    head = StreamingResponse(reply.stream, media_type="text/event-stream", headers=reply.headers)
    await write_stream(head.status_code, head.raw_headers, reply.stream, receive, send)
