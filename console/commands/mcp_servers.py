"""`fleetdeck mcp list`: the MCP servers behind /mcp, their state and their tool calls.

The document is the Engine's `mcp` admin answer (console/engine.py), from the running
instance (live states and counters) or from an Engine opened here (the policy's servers,
not running, and the calls the store holds).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def render(doc: Mapping[str, Any]) -> str:
    servers, tools = doc["servers"], doc["tools"]
    if not servers:
        return "The policy names no MCP server (mcp_servers: in routes.yaml).\n"
    lines = []
    for server in servers:
        kind = server["transport"] + (", remote" if server["remote"] else "")
        lines.append(
            f"{server['server']:<16} {kind:<24} {server['status']:<13} tools {len(server['tools']):>3}  "
            f"calls {server['calls']:>5}  failures {server['failures']:>4}  restarts {server['restarts']:>3}"
        )
        if server.get("last_error") and server["status"] != "up":
            lines.append(f"{'':<16} last error: {server['last_error']}")
    if tools:
        lines += ["", f"{'tool':<36} {'calls':>6} {'refused':>8} {'failed':>7} {'cost $':>9}  last call"]
        lines += [
            f"{t['tool']:<36} {t['calls']:>6} {t['refused']:>8} {t['failed']:>7} "
            f"{t['cost_usd']:>9.4f}  {t['last_call']}"
            for t in tools
        ]
    return "\n".join(lines) + "\n"
