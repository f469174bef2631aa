"""The MCP gateway's cost per tool call: the SDK's client straight to an MCP server vs
through Fleetdeck's `/mcp` in front of it.

One echo MCP server (the SDK's MCPServer, Streamable HTTP, stateless JSON, its own
process) and one `fleetdeck serve` (the policy of bench/gateway.py plus `mcp_servers:`
naming the echo server and a rule allowing `echo__echo` to the bench key). Each round
makes `--calls` sequential `tools/call`s with one client session, direct and through the
gateway, in interleaved rounds (the order alternating), so load from elsewhere on the box
hits both alike: latency p50/p99 per target and the gateway's added p50 and ratio. Through
the gateway each call is authenticated, policed, checked against the inputSchema, screened
both ways, traced and audited.

Run alone: `.venv/bin/python bench/mcp_gateway.py [--calls 300] [--rounds 4]`; writes
bench/out/mcp_gateway.json; `make bench` runs it as its part `mcp`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
from gateway import OUT, REPO, Server, free_port, start_fleetdeck
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

MCP_POLICY = """
mcp_servers:
  echo: {{url: "http://127.0.0.1:{port}/mcp", timeout_s: 10}}
mcp_access:
  - {{allow: [echo__echo], keys: [bench]}}
"""


def serve_echo(port: int) -> None:
    import uvicorn
    from mcp.server.mcpserver import MCPServer

    server = MCPServer("echo")

    @server.tool()
    def echo(text: str) -> str:
        """Say it back."""
        return text

    app = server.streamable_http_app(json_response=True, stateless_http=True)
    print(f"echo MCP server on http://127.0.0.1:{port}/mcp", flush=True)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


ARGUMENTS = {"text": "the quarterly numbers, please"}


async def one_round(url: str, headers: dict[str, str], tool: str, calls: int) -> list[float]:
    latencies = []
    http = httpx2.AsyncClient(headers=headers, timeout=30)
    async with http, Client(streamable_http_client(url, http_client=http), cache=None) as client:
        await client.call_tool(tool, ARGUMENTS)  # warm: the session and the connection
        for _ in range(calls):
            started = time.perf_counter()
            await client.call_tool(tool, ARGUMENTS)
            latencies.append((time.perf_counter() - started) * 1000)
    return latencies


def percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--echo-server", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.echo_server:
        serve_echo(args.echo_server)
        return
    servers: list[Server] = []
    results: dict[str, list[float]] = {"direct": [], "fleetdeck": []}
    with tempfile.TemporaryDirectory(prefix="fleetdeck-mcp-bench-") as tmp:
        try:
            port = free_port()
            echo = Server("echo", [sys.executable, __file__, "--echo-server", str(port)], {}, REPO)
            servers.append(echo)
            echo.wait_for_line("echo MCP server on", 60)
            fleetdeck, url, key, _ = start_fleetdeck(0, Path(tmp), "mcp", MCP_POLICY.format(port=port))
            servers.append(fleetdeck)
            wait_until_up(url)
            targets = {
                "direct": (f"http://127.0.0.1:{port}/mcp", {}, "echo"),
                "fleetdeck": (f"{url}/mcp", {"Authorization": f"Bearer {key}"}, "echo__echo"),
            }
            for number in range(args.rounds):
                order = list(targets) if number % 2 == 0 else list(reversed(targets))
                for name in order:
                    target, headers, tool = targets[name]
                    results[name] += anyio.run(one_round, target, headers, tool, args.calls)
        finally:
            for server in reversed(servers):
                server.stop()
    report = {name: summary(latencies) for name, latencies in results.items()}
    report["added_p50_ms"] = report["fleetdeck"]["p50_ms"] - report["direct"]["p50_ms"]
    report["ratio_p50"] = report["fleetdeck"]["p50_ms"] / report["direct"]["p50_ms"]
    OUT.mkdir(exist_ok=True)
    (OUT / "mcp_gateway.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


def summary(latencies: list[float]) -> dict[str, Any]:
    ordered = sorted(latencies)
    return {"n": len(ordered), "p50_ms": percentile(ordered, 0.5), "p99_ms": percentile(ordered, 0.99)}


def wait_until_up(url: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        servers = httpx.get(f"{url}/healthz", timeout=10).json().get("mcp") or {}
        if servers.get("echo", {}).get("status") == "up":
            return
        time.sleep(0.1)
    raise RuntimeError("the echo MCP server never came up behind Fleetdeck")


if __name__ == "__main__":
    main()
