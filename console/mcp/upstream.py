"""One MCP server behind the gateway: its client session, kept up by a supervisor task.

The supervisor connects (a stdio server is started as a child process; a Streamable HTTP
server is reached on loopback), negotiates the protocol, lists the tools, and then waits
for the connection to be lost: the stdio server exiting ends its stdout, which a relay
between the transport and the session notices. A lost or failed connection is retried
with backoff (the server's `restart:` settings). Calls in flight when the connection goes
get the SDK's connection-closed error at once; a call that arrives while the server is
restarting waits for it, within the call's timeout. A breaker per server (the gateway's
own, console/gateway/breaker.py) refuses calls while the server keeps failing.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import anyio
import httpx2
import mcp_types as types
from anyio.streams.memory import MemoryObjectSendStream
from mcp import Client, MCPError, StdioServerParameters, stdio_client
from mcp.client import Transport
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.message import SessionMessage
from pydantic import ValidationError

from console.gateway.breaker import Breaker, State
from console.policy import McpServerConfig
from console.secrets import provider_secret

log = logging.getLogger("fleetdeck.mcp")
Received = SessionMessage | Exception  # what a transport's read stream yields
Streams = tuple[Any, Any]  # a transport's (read, write) streams
LISTING_PAGES = 100  # a server that pages its tools for ever is cut off here


class Unavailable(Exception):
    """The server cannot take a call now: not up within the timeout, or its breaker is open."""


@dataclass
class Upstream:
    """A supervised MCP server: state, tools, breaker and counters (read by `fleetdeck mcp list`)."""

    name: str
    config: McpServerConfig
    log_dir: Path | None = None  # a stdio server's stderr goes to <log_dir>/<name>.stderr.log
    breaker: Breaker = field(init=False)
    state: str = field(init=False, default="starting")  # starting | up | restarting | stopped
    tools: dict[str, types.Tool] = field(init=False, default_factory=dict)  # the last listing
    calls: int = field(init=False, default=0)
    failures: int = field(init=False, default=0)
    restarts: int = field(init=False, default=0)
    last_error: str | None = field(init=False, default=None)
    _client: Client | None = field(init=False, default=None)
    _up: anyio.Event = field(init=False, default_factory=anyio.Event)
    _lost: anyio.Event = field(init=False, default_factory=anyio.Event)

    def __post_init__(self) -> None:
        self.breaker = Breaker(self.config.breaker)

    @property
    def status(self) -> str:
        """What the console shows: up, starting, restarting, stopped, or breaker open."""
        return "breaker open" if self.breaker.state is State.open else self.state

    def listing(self) -> dict[str, Any]:
        return {
            "server": self.name,
            "transport": self.config.transport,
            "remote": self.config.remote,
            "status": self.status,
            "tools": sorted(self.tools),
            "calls": self.calls,
            "failures": self.failures,
            "restarts": self.restarts,
            "last_error": self.last_error,
        }

    # -- supervision ---------------------------------------------------------------------

    async def supervise(self) -> None:
        """Connect, serve until the connection is lost, restart with backoff; until cancelled."""
        failed_in_a_row = 0
        while True:
            try:
                async with self._connected():
                    failed_in_a_row = 0
                    await self._lost.wait()
                self.last_error = "the connection was lost"
            except Exception as exc:  # a server that cannot start or answers garbage
                self.last_error = f"{type(exc).__name__}: {exc}"[:300]
                log.warning("MCP server %s: %s", self.name, self.last_error)
            self._down()
            self.restarts += 1
            failed_in_a_row += 1
            await anyio.sleep(self.config.restart.backoff_s(failed_in_a_row))

    @contextlib.asynccontextmanager
    async def _connected(self) -> AsyncIterator[None]:
        """Connected and listed: calls are served until the block ends."""
        self._lost = anyio.Event()
        with self._stderr() as errlog:
            transport = _watched(self._transport(errlog), self._lost)
            async with Client(transport, mode="auto", cache=None) as client:
                self.tools = await _list_tools(client)
                self._client, self.state = client, "up"
                self._up.set()
                log.info("MCP server %s is up with %d tools", self.name, len(self.tools))
                try:
                    yield
                finally:
                    self._down()

    @contextlib.contextmanager
    def _stderr(self) -> Iterator[TextIO]:
        """Where a stdio server's stderr goes: a log file (a console's screen is no place for it)."""
        if self.log_dir is None or self.config.command is None:
            yield sys.stderr
            return
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with (self.log_dir / f"{self.name}.stderr.log").open("a", encoding="utf-8") as errlog:
            yield errlog

    def _down(self) -> None:
        """No client until the next connection: calls arriving now wait for it."""
        self._client, self.state = None, "restarting"
        if self._up.is_set():
            self._up = anyio.Event()

    def _transport(self, errlog: TextIO) -> Transport:
        config = self.config
        secrets = {name: provider_secret(secret) or "" for name, secret in config.secrets.items()}
        if config.command is not None:
            env = {**config.env, **secrets}
            params = StdioServerParameters(command=config.command, args=list(config.args), env=env)
            return stdio_client(params, errlog=errlog)
        assert config.url is not None
        http = httpx2.AsyncClient(headers=secrets, timeout=httpx2.Timeout(30.0, read=config.timeout_s))
        return _http_transport(config.url, http)

    # -- calls ---------------------------------------------------------------------------

    async def call(self, tool: str, arguments: dict[str, Any], timeout_s: float) -> Any:
        """The server's CallToolResult within `timeout_s` (waiting for a restart included);
        raises Unavailable, TimeoutError, MCPError, or what a broken transport or answer raises.
        The breaker hears how it went; a broken transport is reconnected."""
        if not self.breaker.available():
            raise Unavailable(
                f"MCP server {self.name!r} keeps failing: its breaker is open "
                f"(retry in {self.breaker.retry_in():.0f} s)"
            )
        self.calls += 1
        try:
            with anyio.fail_after(timeout_s):
                while (client := self._client) is None:
                    await self._up.wait()
                result = await client.call_tool(tool, arguments)
        except anyio.get_cancelled_exc_class():
            self.breaker.abandoned()
            raise
        except Exception as exc:
            self.failures += 1
            self.breaker.failed()
            if _broken_transport(exc):
                self._lost.set()  # reconnect rather than reuse it
            raise
        self.breaker.succeeded()
        return result


def _broken_transport(exc: Exception) -> bool:
    if isinstance(exc, MCPError):
        return exc.code == types.CONNECTION_CLOSED
    return not isinstance(exc, TimeoutError | ValidationError)


@contextlib.asynccontextmanager
async def _http_transport(url: str, http: httpx2.AsyncClient) -> AsyncIterator[Streams]:
    async with http, streamable_http_client(url, http_client=http) as streams:
        yield streams


@contextlib.asynccontextmanager
async def _watched(inner: Transport, lost: anyio.Event) -> AsyncIterator[Streams]:
    """`inner`, with the server's messages relayed so that the end of them sets `lost`."""
    async with inner as (read, write):
        send, receive = anyio.create_memory_object_stream[Received](0)
        async with anyio.create_task_group() as relays:
            relays.start_soon(_relay, read, send, lost)
            try:
                yield receive, write
            finally:
                relays.cancel_scope.cancel()


async def _relay(
    read: AsyncIterator[Received],
    send: MemoryObjectSendStream[Received],
    lost: anyio.Event,
) -> None:
    try:
        async with send:
            async for message in read:
                await send.send(message)
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream):
        pass
    finally:
        lost.set()


async def _list_tools(client: Client) -> dict[str, types.Tool]:
    tools: dict[str, types.Tool] = {}
    cursor: str | None = None
    for _ in range(LISTING_PAGES):
        page = await client.list_tools(cursor=cursor)
        tools.update((tool.name, tool) for tool in page.tools)
        cursor = page.next_cursor
        if cursor is None:
            break
    return tools
