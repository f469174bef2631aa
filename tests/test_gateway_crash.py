"""An error that escapes an endpoint calling no model (here: the stored responses' table gone
from under a running gateway) is a 500 in the caller's envelope, with a request id, and is
still one trace. The gateway runs in process so the store can be broken beneath it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from console.engine import Engine
from console.policy import parse_policy
from console.settings import Settings

POLICY = """
providers:
  lab: {kind: openai_compat, base_url: "http://127.0.0.1:9", models: [mock-gpt]}
routes:
  - {intent: chat, primary: lab/mock-gpt}
default_route: chat
"""


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    with Engine(Settings(data_dir=tmp_path / "data")) as engine:
        engine.open_gateway(parse_policy(POLICY), port=0)
        engine.start()
        yield engine


@pytest.mark.parametrize(
    ("method", "path", "operation"),
    [
        ("GET", "/v1/responses/resp_1", "response_get"),
        ("DELETE", "/v1/responses/resp_1", "response_delete"),
        ("GET", "/v1/responses/resp_1/input_items", "response_input_items"),
    ],
)
def test_an_endpoint_that_fails_answers_500_with_its_trace(
    engine: Engine, method: str, path: str, operation: str
) -> None:
    engine.db.cursor().execute("ALTER TABLE stored_responses RENAME TO stored_responses_away")
    key = engine.console_key()[0]
    answer = httpx.request(method, engine.url + path, headers={"Authorization": f"Bearer {key}"}, timeout=30)

    assert answer.status_code == 500, answer.text
    error = answer.json()["error"]
    assert error["type"] == "api_error" and "see its log" in error["message"]
    request_id = answer.headers["x-fleetdeck-request-id"]
    assert engine.recorder.flush()
    traced = engine.db.cursor().execute(
        "SELECT operation, http_status FROM traces WHERE request_id = ?", [request_id]
    )
    assert traced.fetchall() == [(operation, 500)]
