"""A trace copied as `curl` is the same call again: run against a real `fleetdeck serve`."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx
import orjson
from fakes.openai_upstream import FakeOpenAI
from gateway_process import fleetdeck_serve

from console.engine import Engine
from console.settings import Settings
from console.tui.readmodel import replay, traffic

POLICY = """
providers:
  lab: {{kind: openai_compat, base_url: "{url}", models: [mock-gpt]}}
routes:
  - {{intent: triage, primary: lab/mock-gpt, max_retries: 0}}
default_route: triage
"""
MESSAGES = [
    {"role": "system", "content": "Be brief; it's 'fine' to quote."},
    {"role": "user", "content": "My card was charged twice, mail me at jane@example.com"},
]


def test_a_trace_copied_as_curl_sends_the_same_redacted_call(upstream: FakeOpenAI, tmp_path: Path) -> None:
    data_dir, policy = tmp_path / "data", POLICY.format(url=upstream.base_url)
    headers = {"X-Fleetdeck-Workflow": "support", "X-Fleetdeck-Task": "t-curl"}
    with fleetdeck_serve(data_dir, policy) as served:
        body = {"model": "route:triage", "messages": MESSAGES, "max_tokens": 20}
        first = httpx.post(
            f"{served.base_url}/chat/completions", json=body, headers={**served.auth, **headers}, timeout=30
        )
        assert first.status_code == 200, first.text
        request_id = first.headers["x-fleetdeck-request-id"]
    with Engine(Settings(data_dir=data_dir)) as engine:
        detail = traffic.detail(engine.db.cursor(), request_id)
    assert detail is not None
    upstream.reset()
    with fleetdeck_serve(data_dir, policy) as served:
        command = replay.curl_command(detail.row, detail.request, served.url)
        assert command is not None and served.key not in command  # the key stays in the shell
        done = subprocess.run(
            ["bash", "-c", command],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
            env={**os.environ, "FLEETDECK_KEY": served.key},
        )
    assert done.returncode == 0, done.stderr
    assert orjson.loads(done.stdout)["object"] == "chat.completion"
    (sent,) = upstream.requests
    assert sent.body["messages"][0] == MESSAGES[0]  # quotes survive the shell
    assert "jane@example.com" not in str(sent.body["messages"])  # what the guard redacted stays out
    assert sent.headers.get("x-fleetdeck-workflow") is None  # context headers are Fleetdeck's own
    rerun = [t for t in traffic_rows(data_dir) if t["task_id"] == "t-curl"]
    assert len(rerun) == 2 and {t["workflow_id"] for t in rerun} == {"support"}


def traffic_rows(data_dir: Path) -> list[dict[str, object]]:
    with Engine(Settings(data_dir=data_dir)) as engine:
        return engine.db.cursor().sql("SELECT task_id, workflow_id FROM traces").to_arrow_table().to_pylist()


def test_only_calls_with_a_kept_request_copy_and_only_text_chats_replay() -> None:
    row = {"operation": "chat", "route": "triage", "request_model": "route:triage"}
    assert replay.curl_command(row, None, None) is None
    assert replay.curl_command({**row, "operation": "outcome"}, {"messages": []}, None) is None
    chat = {
        "messages": [
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": "b"},
            {"role": "user", "content": [{"type": "text", "text": "c"}]},
        ]
    }
    assert replay.playground_chat(row, chat) == (
        "route:triage",
        [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
        "c",
    )
    tool_turn = {"messages": [{"role": "user", "content": "a"}, {"role": "tool", "content": None}]}
    assert replay.playground_chat(row, tool_turn) is None
