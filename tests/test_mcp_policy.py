"""`mcp_servers:` and `mcp_access:` in routes.yaml: what validates, and errors with file:line."""

from __future__ import annotations

import pytest

from console.mcp.access import Access, Caller
from console.policy import PolicyError, parse_policy

BASE = """
providers:
  local: {kind: local}
routes:
  - {intent: support, primary: local/smollm2-135m}
"""


def test_servers_and_rules_validate() -> None:
    policy = parse_policy(
        BASE
        + """
mcp_servers:
  files: {command: python, args: [-m, files], secrets: {FILES_TOKEN: files}, price_per_call: 0.002}
  search: {url: "http://127.0.0.1:9100/mcp", remote: true, pii: block, on_injection: flag}
mcp_access:
  - {allow: [files__read], approval: [files__delete], environments: [prod], routes: [support]}
  - {allow: ["search__*"], keys: [agent-1]}
"""
    )
    files, search = policy.mcp_servers["files"], policy.mcp_servers["search"]
    assert (files.transport, files.remote, files.secrets, files.price_per_call) == (
        "stdio",
        False,
        {"FILES_TOKEN": "files"},
        0.002,
    )
    assert (search.transport, search.remote, search.pii, search.on_injection) == (
        "streamable_http",
        True,
        "block",
        "flag",
    )
    first = policy.mcp_access[0]
    assert first.applies("prod", "anyone", "support")
    assert not first.applies("dev", "anyone", "support")
    assert not first.applies("prod", "anyone", None)


@pytest.mark.parametrize(
    ("fragment", "expected"),
    [
        (
            "mcp_servers:\n  web: {url: 'http://example.com/mcp'}\n",
            "<policy>:7: mcp_servers.web.url: An MCP server URL must be on loopback",
        ),
        (
            "mcp_servers:\n  a__b: {command: x}\n",
            "<policy>:7: mcp_servers.a__b (key): MCP server name 'a__b'",
        ),
        (
            "mcp_servers:\n  both: {command: x, url: 'http://127.0.0.1:1/mcp'}\n",
            "<policy>:7: mcp_servers.both: Give either command:",
        ),
        (
            "mcp_servers:\n  files: {command: x}\nmcp_access:\n  - allow: [fils__read]\n",
            "<policy>:9: mcp_access[0].allow[0]: Unknown MCP server 'fils' (did you mean 'files'?)",
        ),
        (
            "mcp_servers:\n  files: {command: x}\nmcp_access:\n  - allow: [read]\n",
            "<policy>:9: mcp_access[0].allow[0]: Expected <server>__<tool>",
        ),
        (
            "mcp_servers:\n  files: {command: x, price_per_cal: 3}\n",
            "<policy>:7: mcp_servers.files.price_per_cal: Unknown field (did you mean 'price_per_call'?)",
        ),
    ],
)
def test_mistakes_point_at_their_line(fragment: str, expected: str) -> None:
    with pytest.raises(PolicyError) as raised:
        parse_policy(BASE + fragment)
    assert str(raised.value).startswith(expected), str(raised.value)


def test_access_denies_by_default_and_approval_wins() -> None:
    policy = parse_policy(
        BASE
        + """
mcp_servers:
  files: {command: files}
mcp_access:
  - {allow: ["files__*"], keys: [agent]}
  - {approval: [files__delete], environments: [prod]}
"""
    )
    access = Access(policy.mcp_access)
    assert access.verdict(Caller("dev", "agent", None), "files__read") == "allow"
    assert access.verdict(Caller("dev", "agent", None), "files__delete") == "allow"
    assert access.verdict(Caller("prod", "agent", None), "files__delete") == "approval"
    assert access.verdict(Caller("prod", "other", None), "files__read") == "deny"
    assert access.verdict(Caller("dev", "agent", None), "other__read") == "deny"
