"""A real Streamable HTTP MCP server on 127.0.0.1 for the MCP gateway's tests (the SDK's
MCPServer on uvicorn, on its own thread). `calls` lists every tool call it received,
with its arguments, as it received them (thread-safe to read).

    with FakeCrm() as crm:
        crm.url          # http://127.0.0.1:<port>/mcp
        crm.calls        # [("lookup", {"customer": ...}), ...]
        crm.api_keys     # the X-Api-Key header each lookup came with
"""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Any

import uvicorn
from mcp.server.mcpserver import Context, MCPServer


class FakeCrm:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.api_keys: list[str | None] = []  # the X-Api-Key header of each lookup
        self._lock = threading.Lock()
        server = MCPServer("crm")

        @server.tool()
        def lookup(customer: str, ctx: Context) -> str:
            """Look a customer up by name or email."""
            request = ctx.request_context.request
            with self._lock:
                self.api_keys.append(request.headers.get("x-api-key") if request is not None else None)
            self._record("lookup", {"customer": customer})
            return f"Customer {customer}: plan gold, since 2021."

        @server.tool()
        def send_email(to: str, body: str) -> str:
            """Send an email to a customer."""
            self._record("send_email", {"to": to, "body": body})
            return "sent"

        app = server.streamable_http_app(json_response=True, stateless_http=True)
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="fake-mcp-crm", daemon=True)

    def _record(self, tool: str, arguments: dict[str, Any]) -> None:
        with self._lock:
            self.calls.append((tool, arguments))

    @property
    def url(self) -> str:
        port = self._server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/mcp"

    def __enter__(self) -> FakeCrm:
        self._thread.start()
        started = threading.Event()
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the fake CRM MCP server did not start")
            started.wait(0.01)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
