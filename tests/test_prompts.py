"""The prompt registry: versions by content hash, pins as audit entries, templates applied by the gateway."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fakes.openai_upstream import FakeOpenAI
from gateway_process import Served, trace_of
from gateway_process import run_cli as cli

from console.engine import Engine
from console.gateway.admin import AdminEndpoint
from console.gateway.prompts import PromptError
from console.settings import Settings

POLICY = """
providers:
  lab: {{kind: openai_compat, base_url: "{url}", prices: {{m: {{input: 1, output: 1}}}}}}
routes:
  - {{intent: support, primary: lab/m, max_retries: 0}}
default_route: support
"""
FRIENDLY = "You answer for {{company}}. Be friendly to {{ customer }}."
TERSE = "You answer for {{company}}. Be terse."


def test_versions_are_numbered_and_identified_by_content(engine: Engine) -> None:
    registry = engine.prompts
    first, added = registry.add("support", FRIENDLY, "ana")
    assert (first.version, added) == ("v1", True)
    second, added = registry.add("support", TERSE, "ana")
    assert (second.version, added) == ("v2", True)
    again, added = registry.add("support", FRIENDLY, "ben")
    assert (again.version, added, again.author) == ("v1", False, "ana")
    assert first.variables() == ["company", "customer"]
    assert [v.version for v in registry.versions("support")] == ["v1", "v2"]


def test_a_bare_name_is_the_pinned_version_else_the_latest(engine: Engine) -> None:
    registry = engine.prompts
    registry.add("support", FRIENDLY, "ana")
    registry.add("support", TERSE, "ana")
    assert registry.resolve("support").version == "v2"
    assert registry.pin("support", "v1", "ana") is None
    assert registry.resolve("support").version == "v1"
    assert registry.resolve("support", "v2").version == "v2"
    assert registry.pin("support", "v2", "ben") == "v1"


def test_unknown_prompts_versions_and_missing_variables_are_named(engine: Engine) -> None:
    registry = engine.prompts
    registry.add("support", FRIENDLY, "ana")
    with pytest.raises(PromptError, match="unknown prompt 'billing'"):
        registry.resolve("billing")
    with pytest.raises(PromptError, match=r"version 'v7' does not exist \(versions: v1\)"):
        registry.resolve("support", "v7")
    body: dict[str, Any] = {"messages": [{"role": "user", "content": "hi"}], "metadata": {"company": "Acme"}}
    with pytest.raises(PromptError, match=r"support@v1 needs the variable.*customer") as refused:
        registry.apply("support", None, body)
    assert refused.value.code == "prompt_variable_missing"
    with pytest.raises(PromptError, match="letters, digits"):
        registry.add("bad@name", "text", "ana")


def test_apply_puts_the_rendered_template_first_and_takes_its_variables(engine: Engine) -> None:
    engine.prompts.add("support", FRIENDLY, "ana")
    body: dict[str, Any] = {
        "messages": [{"role": "user", "content": "hi"}],
        "metadata": {"company": "Acme", "customer": "Zoe", "order": "42"},
    }
    used = engine.prompts.apply("support", "v1", body)
    assert used.ref == "support@v1"
    assert body["messages"] == [
        {"role": "system", "content": "You answer for Acme. Be friendly to Zoe."},
        {"role": "user", "content": "hi"},
    ]
    assert body["metadata"] == {"order": "42"}


def test_pins_are_audited_and_survive_a_restart(settings: Settings) -> None:
    with Engine(settings) as engine:
        engine.prompts.add("support", FRIENDLY, "ana")
        engine.prompts.add("support", TERSE, "ana")
        engine.prompts.pin("support", "v1", "ana@box")
    with Engine(settings) as engine:
        assert engine.prompts.resolve("support").version == "v1"
        rows = engine.db.cursor().sql(
            "SELECT actor, action, subject, payload FROM audit_log WHERE action LIKE 'prompt.%' ORDER BY seq"
        )
        entries = rows.fetchall()
    assert [(actor, action, subject) for actor, action, subject, _ in entries] == [
        ("ana", "prompt.added", "prompt:support@v1"),
        ("ana", "prompt.added", "prompt:support@v2"),
        ("ana@box", "prompt.pin", "prompt:support@v1"),
    ]
    assert orjson.loads(entries[-1][3]) == {"previous": None, "version": "v1"}


def test_cli_without_an_instance_adds_lists_and_pins(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    template = tmp_path / "support.txt"
    template.write_text(FRIENDLY)
    added = cli(data_dir, "prompts", "add", "support", str(template))
    assert added.returncode == 0, added.stderr
    assert "support v1 added" in added.stdout
    assert "unchanged: this text is v1" in cli(data_dir, "prompts", "add", "support", str(template)).stdout
    refused = cli(data_dir, "prompts", "pin", "support", "v9")
    assert refused.returncode == 2 and "version 'v9' does not exist" in refused.stderr
    assert cli(data_dir, "prompts", "pin", "support", "v1").returncode == 0
    listed = cli(data_dir, "prompts", "list", "--format", "json")
    assert [(row["version"], row["pinned"], row["variables"]) for row in orjson.loads(listed.stdout)] == [
        ("v1", True, "company, customer")
    ]


# -- through a running gateway -----------------------------------------------------------


@pytest.fixture(scope="module")
def policy(upstream: FakeOpenAI) -> str:
    return POLICY.format(url=upstream.base_url)


def chat(served: Served, prompt: str, metadata: dict[str, str]) -> httpx.Response:
    body = {
        "model": "route:support",
        "messages": [{"role": "user", "content": "hello"}],
        "metadata": metadata,
    }
    headers = {**served.auth, "X-Fleetdeck-Prompt": prompt}
    return httpx.post(f"{served.base_url}/chat/completions", json=body, headers=headers, timeout=30)


def add_through_cli(served: Served, tmp_path: Path, name: str, text: str) -> None:
    template = tmp_path / f"{name}-{abs(hash(text))}.txt"
    template.write_text(text)
    added = cli(served.data_dir, "prompts", "add", name, str(template))
    assert added.returncode == 0, added.stderr


def test_the_gateway_applies_the_pinned_template_and_traces_the_version(
    served: Served, upstream: FakeOpenAI, tmp_path: Path
) -> None:
    add_through_cli(served, tmp_path, "greeter", FRIENDLY)
    add_through_cli(served, tmp_path, "greeter", TERSE)
    metadata = {"company": "Acme", "customer": "Zoe"}

    latest = chat(served, "greeter", metadata)  # nothing pinned: the latest added
    assert latest.status_code == 200, latest.text
    sent = upstream.last_request.body
    assert sent["messages"][0] == {"role": "system", "content": "You answer for Acme. Be terse."}
    assert sent.get("metadata") == {"customer": "Zoe"}  # only the template's variables are taken out
    trace = trace_of(served, latest.headers["x-fleetdeck-request-id"])
    assert (trace["prompt_name"], trace["prompt_version"]) == ("greeter", "v2")

    pinned = cli(served.data_dir, "prompts", "pin", "greeter", "v1")  # through the admin API
    assert pinned.returncode == 0, pinned.stderr
    assert "Prompt greeter pinned to v1." in pinned.stdout
    rolled_back = chat(served, "greeter", metadata)  # the very next request, no restart
    assert upstream.last_request.body["messages"][0]["content"] == "You answer for Acme. Be friendly to Zoe."
    trace = trace_of(served, rolled_back.headers["x-fleetdeck-request-id"])
    assert trace["prompt_version"] == "v1"

    explicit = chat(served, "greeter@v2", metadata)
    assert trace_of(served, explicit.headers["x-fleetdeck-request-id"])["prompt_version"] == "v2"


def test_unknown_prompts_and_missing_variables_are_400s_with_one_trace(
    served: Served, tmp_path: Path
) -> None:
    add_through_cli(served, tmp_path, "needs_vars", FRIENDLY)
    for prompt, metadata, code, named in (
        ("nowhere", {}, "prompt_not_found", "unknown prompt 'nowhere'"),
        ("needs_vars@v3", {}, "prompt_not_found", "version 'v3' does not exist"),
        ("needs_vars", {"company": "Acme"}, "prompt_variable_missing", "customer"),
    ):
        refused = chat(served, prompt, metadata)
        assert refused.status_code == 400
        error = refused.json()["error"]
        assert (error["code"], error["param"]) == (code, "X-Fleetdeck-Prompt")
        assert named in error["message"]
        request_id = refused.headers["x-fleetdeck-request-id"]
        trace = trace_of(served, request_id)
        assert (trace["status"], trace["http_status"]) == ("error", 400)
        endpoint = AdminEndpoint.find(served.data_dir)
        assert endpoint is not None
        rows = endpoint.query({"sql": f"SELECT count(*) AS n FROM traces WHERE request_id = '{request_id}'"})
        assert rows.to_pylist() == [{"n": 1}]


def test_list_through_a_running_instance_marks_the_pin(served: Served, tmp_path: Path) -> None:
    add_through_cli(served, tmp_path, "listed", TERSE)
    assert cli(served.data_dir, "prompts", "pin", "listed", "v1").returncode == 0
    listed = cli(served.data_dir, "prompts", "list", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    rows = [row for row in orjson.loads(listed.stdout) if row["name"] == "listed"]
    assert [(row["version"], row["pinned"]) for row in rows] == [("v1", True)]
