"""Least privilege for MCP tools: which key may call which `server__tool`, freely or after a
human's approval. Deny by default: a tool no applicable `mcp_access:` rule lists is refused,
and never listed to that key. When rules disagree, approval wins over allow."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from console.policy import MCP_SEPARATOR, McpAccessRule

Verdict = Literal["allow", "approval", "deny"]


@dataclass(frozen=True, slots=True)
class Caller:
    """Who calls: the key's environment and name, and the route the call says it serves."""

    environment: str
    key: str
    route: str | None


def namespaced(server: str, tool: str) -> str:
    return f"{server}{MCP_SEPARATOR}{tool}"


def split(name: str) -> tuple[str, str] | None:
    """`files__read_file` → ("files", "read_file"); None when the name has no server part."""
    server, separator, tool = name.partition(MCP_SEPARATOR)
    return (server, tool) if separator and server and tool else None


class Access:
    def __init__(self, rules: Sequence[McpAccessRule]) -> None:
        self._rules = tuple(rules)

    def verdict(self, caller: Caller, name: str) -> Verdict:
        applicable = [
            rule for rule in self._rules if rule.applies(caller.environment, caller.key, caller.route)
        ]
        if any(_listed(rule.approval, name) for rule in applicable):
            return "approval"
        if any(_listed(rule.allow, name) for rule in applicable):
            return "allow"
        return "deny"


def _listed(patterns: Sequence[str], name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)
