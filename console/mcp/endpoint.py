"""`/mcp`: the MCP gateway's Streamable HTTP endpoint, built from the SDK's low-level Server
and its session manager (stateless, JSON answers: every POST stands alone, so each one is
authenticated with its own virtual key, and a session opened by one key is nobody's).

The ASGI face refuses a request without a valid key before the SDK sees it (HTTP 401 with
a JSON-RPC error body). `tools/list` and `tools/call` are the gateway's (console/mcp/
pipeline.py); any request the SDK itself refuses (unparseable JSON, not JSON-RPC, bad
params) is traced too, and so is every other request (initialize, tools/list, ping, a
notification: operation `mcp:<method>`): each request to /mcp leaves exactly one trace.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import mcp_types as types
import orjson
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.lowlevel.server import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from pydantic import ValidationError
from starlette.datastructures import Headers
from starlette.types import Message, Receive, Scope, Send

from console.gateway.openai_api import ApiError
from console.mcp.call import REFUSED, Refused
from console.mcp.pipeline import McpGateway

TRACED = "fleetdeck.traced"  # set in the ASGI scope once a request's trace is taken care of
LOOPBACK = ("127.0.0.1", "localhost", "::1")
TAPPED_BYTES = 64 * 1024  # of a request and its answer, read to name the method and the outcome


class McpEndpoint:
    """The ASGI app mounted at /mcp, and `running()`, the supervisors and the session manager."""

    def __init__(self, gateway: McpGateway, host: str, version: str = "") -> None:
        self.gateway = gateway
        self.server: Server[Any] = Server(
            "fleetdeck",
            version=version,
            instructions="Fleetdeck's MCP gateway: tools of several servers, as <server>__<tool>.",
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
            get_tool_input_schema=gateway.input_schema,
        )
        self.server.middleware.append(self._trace_refused_params)
        security = None
        if host in LOOPBACK:
            security = TransportSecuritySettings(
                allowed_hosts=["127.0.0.1:*", "localhost:*", "[::1]:*"],
                allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"],
            )
        self.manager = StreamableHTTPSessionManager(
            app=self.server, stateless=True, json_response=True, security_settings=security
        )

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Supervise every upstream server and serve /mcp while the block runs."""
        try:
            async with anyio.create_task_group() as supervisors:
                for upstream in self.gateway.upstreams.values():
                    supervisors.start_soon(upstream.supervise)
                try:
                    async with self.manager.run():
                        yield
                finally:
                    supervisors.cancel_scope.cancel()
        finally:
            for upstream in self.gateway.upstreams.values():
                upstream.state = "stopped"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = Headers(scope=scope)
        keys = self.gateway.keys
        if keys is not None:
            try:
                keys.authenticate(headers)
            except ApiError as error:
                refused = Refused(REFUSED, error.message, "invalid_api_key", "blocked")
                self.gateway.refused_request(headers, refused)
                await _json_rpc_error(send, 401, refused)
                return
        started, asked, answered = time.perf_counter(), bytearray(), bytearray()
        status: list[int] = []

        async def tap() -> Message:
            message = await receive()
            if message["type"] == "http.request" and len(asked) < TAPPED_BYTES:
                asked.extend(message.get("body", b""))
            return message

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            elif message["type"] == "http.response.body" and len(answered) < TAPPED_BYTES:
                answered.extend(message.get("body", b""))
            await send(message)

        scope[TRACED] = False
        await self.manager.handle_request(scope, tap, watch)
        if scope[TRACED] or not status:
            return
        if status[0] >= 400:
            message = f"{scope['method']} /mcp refused by the MCP transport (HTTP {status[0]})"
            self.gateway.refused_request(
                headers, Refused(types.INVALID_REQUEST, message, "malformed_request")
            )
            return
        failed = _json_rpc_failed(bytes(answered))
        self.gateway.protocol_request(headers, _method(bytes(asked)), 500 if failed else status[0], started)

    async def _list_tools(
        self, ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        meta = params.meta if params is not None else None
        return types.ListToolsResult(tools=await self.gateway.list_tools(_headers(ctx), meta))

    async def _call_tool(
        self, ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        _mark_traced(ctx)
        return await self.gateway.call_tool(_headers(ctx), params.name, params.arguments, params.meta)

    async def _trace_refused_params(
        self, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        """A tools/call whose params the SDK refuses (no name, arguments not an object) is traced."""
        try:
            return await call_next(ctx)
        except ValidationError as invalid:
            if ctx.method == "tools/call":
                _mark_traced(ctx)
                message = f"Invalid tools/call params: {invalid.errors()[0]['msg']}"
                self.gateway.refused_request(
                    _headers(ctx), Refused(types.INVALID_PARAMS, message, "invalid_params")
                )
            raise


def _method(body: bytes) -> str:
    """The JSON-RPC method a request named ("" for a response or anything else)."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return ""
    method = parsed.get("method") if isinstance(parsed, dict) else None
    return method if isinstance(method, str) else ""


def _json_rpc_failed(body: bytes) -> bool:
    try:
        parsed = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return False
    return isinstance(parsed, dict) and "error" in parsed


def _headers(ctx: ServerRequestContext[Any, Any]) -> Headers:
    request = ctx.request
    return request.headers if request is not None else Headers()


def _mark_traced(ctx: ServerRequestContext[Any, Any]) -> None:
    if ctx.request is not None:
        ctx.request.scope[TRACED] = True


async def _json_rpc_error(send: Send, status: int, error: Refused) -> None:
    body = orjson.dumps(
        {"jsonrpc": "2.0", "id": None, "error": {"code": error.code, "message": error.message}}
    )
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
