"""Random bodies and headers at every endpoint: never a 500, always an envelope, one trace per request."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fakes.openai_upstream import FakeOpenAI
from gateway_process import Served, stored_traces
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

LLM_PATHS = ("/chat/completions", "/completions", "/embeddings")
OTHER_PATHS = ("/models", "/outcomes")
calls = itertools.count()

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
messages = st.lists(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "system", "assistant", "tool", "robot", 7])},
        optional={"content": json_values | st.text(max_size=30), "name": json_values},
    ),
    max_size=3,
)


def _encode(value: object) -> bytes:
    return json.dumps(value).encode()  # stdlib: also integers beyond 64 bits


near_valid = st.fixed_dictionaries(
    {},
    optional={
        "model": st.sampled_from(["route:support", "lab/mock-gpt", "nope", "route:", "", 3]),
        "messages": messages | json_values,
        "prompt": json_values,
        "input": json_values,
        "stream": st.booleans() | json_values,
        "max_tokens": st.integers(-5, 50) | json_values,
        "temperature": json_values,
        "metadata": st.dictionaries(st.sampled_from(["workflow", "task", "step", "tier", "x"]), json_values),
        "stream_options": json_values,
        "response_format": json_values,
        "tools": json_values,
    },
)
bodies = (
    near_valid.map(_encode)
    | json_values.map(_encode)
    | st.binary(max_size=64)
    | st.text(max_size=40).map(str.encode)
)
header_text = st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=20)  # what h11 will send
headers = st.dictionaries(
    st.sampled_from(
        [
            "X-Fleetdeck-Workflow",
            "X-Fleetdeck-Task",
            "X-Fleetdeck-Step",
            "X-Fleetdeck-Tier",
            "X-Fleetdeck-Prompt",
        ]
    ),
    header_text,
)


POLICY = """
providers:
  lab: {{kind: openai_compat, base_url: "{url}", prices: {{mock-gpt: {{input: 1, output: 2}}}}}}
routes:
  - {{intent: support, primary: lab/mock-gpt, max_retries: 0, timeouts: {{total_s: 5}}}}
default_route: support
"""


@pytest.fixture(scope="module")
def policy(upstream: FakeOpenAI) -> str:
    return POLICY.format(url=upstream.base_url)


@pytest.fixture(scope="module")
def data_dir(data_dir: Path) -> Iterator[Path]:
    yield data_dir
    # `served` has stopped: its store can be opened
    assert len(stored_traces(data_dir, "request_id")) == next(calls), "one trace per request"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(LLM_PATHS + OTHER_PATHS), body=bodies, extra=headers)
def test_any_request_gets_an_answer_or_an_envelope(
    served: Served, path: str, body: bytes, extra: dict[str, str]
) -> None:
    response = httpx.post(
        f"{served.base_url}{path}", content=body, headers={**served.auth, **extra}, timeout=30
    )
    next(calls)
    assert response.headers["x-fleetdeck-request-id"]
    assert response.status_code != 500, response.text
    if response.status_code >= 400 and response.status_code != 405:
        error: dict[str, Any] = response.json()["error"]
        assert isinstance(error["message"], str) and error["message"]
        assert {"type", "param", "code"} <= error.keys()
    elif response.headers.get("content-type", "").startswith("text/event-stream"):
        assert response.text.rstrip().endswith("data: [DONE]") or '"error"' in response.text


def test_unknown_methods_and_paths_get_envelopes(served: Served, tmp_path: Path) -> None:
    for method, path in (("GET", "/chat/completions"), ("DELETE", "/models"), ("POST", "/v2/whatever")):
        response = httpx.request(method, f"{served.base_url}{path}", timeout=10)
        next(calls)
        assert response.status_code in (404, 405)
        assert response.json()["error"]["message"]
