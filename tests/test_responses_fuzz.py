"""Random Responses API requests: never a 500, always a response or OpenAI's envelope, and
one trace per request (counted in the store once the instance has stopped)."""

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

calls = itertools.count()

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
parts = st.lists(
    st.fixed_dictionaries(
        {"type": st.sampled_from(["input_text", "output_text", "input_image", "refusal", "input_audio", 1])},
        optional={
            "text": st.text(max_size=20) | json_values,
            "image_url": json_values,
            "refusal": json_values,
        },
    ),
    max_size=3,
)
items = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "type": st.sampled_from(
                ["message", "function_call", "function_call_output", "reasoning", "web", 7]
            ),
            "role": st.sampled_from(["user", "assistant", "system", "developer", "tool", 3]),
            "content": st.text(max_size=20) | parts | json_values,
            "call_id": st.sampled_from(["c1", "c2", ""]) | json_values,
            "name": st.sampled_from(["lookup", ""]) | json_values,
            "arguments": st.sampled_from(["{}", '{"q": 1}']) | json_values,
            "output": st.text(max_size=10) | parts | json_values,
            "id": st.text(max_size=8) | json_values,
        },
    ),
    max_size=4,
)
tools = st.lists(
    st.fixed_dictionaries(
        {"type": st.sampled_from(["function", "web_search", 2])},
        optional={"name": st.sampled_from(["lookup", ""]) | json_values, "parameters": json_values},
    ),
    max_size=2,
)
requests = st.fixed_dictionaries(
    {},
    optional={
        "model": st.sampled_from(["route:support", "lab/mock-gpt", "nope", 3]),
        "input": st.text(max_size=20) | items | json_values,
        "instructions": st.text(max_size=10) | json_values,
        "stream": st.booleans() | json_values,
        "max_output_tokens": st.integers(-2, 20) | json_values,
        "temperature": json_values,
        "top_p": json_values,
        "metadata": st.dictionaries(st.sampled_from(["workflow", "task", "step", "x"]), json_values),
        "tools": tools | json_values,
        "tool_choice": st.sampled_from(["auto", "none", "required", "sometimes"])
        | st.fixed_dictionaries({"type": st.just("function"), "name": json_values})
        | json_values,
        "text": st.fixed_dictionaries({"format": json_values | st.fixed_dictionaries({"type": json_values})})
        | json_values,
        "store": st.booleans() | json_values,
        "previous_response_id": st.sampled_from(["resp_nope", ""]) | json_values,
        "parallel_tool_calls": st.booleans() | json_values,
        "reasoning": json_values,
    },
)
bodies = requests.map(lambda body: json.dumps(body).encode()) | st.binary(max_size=40)

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
    traced = stored_traces(data_dir, "protocol, operation")
    assert len(traced) == next(calls), "one trace per request"


def check_answer(response: httpx.Response) -> None:
    assert response.headers.get("x-fleetdeck-request-id"), (response.status_code, response.text)
    assert response.status_code < 500 or response.status_code == 502, response.text
    if response.status_code >= 400:
        error: dict[str, Any] = response.json()["error"]
        assert isinstance(error["message"], str) and error["message"]
        assert {"type", "param", "code"} <= error.keys()
    elif response.headers.get("content-type", "").startswith("text/event-stream"):
        last = response.text.strip().split("\n\n")[-1]
        assert last.startswith(("event: response.completed", "event: response.incomplete", "event: error"))
    else:
        assert response.json()["object"] == "response"


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies)
def test_any_responses_request_gets_a_response_or_an_envelope(served: Served, body: bytes) -> None:
    response = httpx.post(f"{served.base_url}/responses", content=body, headers=served.auth, timeout=30)
    next(calls)
    check_answer(response)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    response_id=st.from_regex(r"\A[A-Za-z0-9_-]{1,16}\Z"),
    method=st.sampled_from(["GET", "DELETE", "LIST"]),
    params=st.dictionaries(st.sampled_from(["limit", "order", "after"]), st.text(max_size=5), max_size=3),
)
def test_any_stored_response_call_gets_an_envelope(
    served: Served, response_id: str, method: str, params: dict[str, str]
) -> None:
    path = f"{served.base_url}/responses/{response_id}" + ("/input_items" if method == "LIST" else "")
    verb = "GET" if method == "LIST" else method
    response = httpx.request(verb, path, params=params, headers=served.auth, timeout=30)
    next(calls)
    assert response.headers.get("x-fleetdeck-request-id"), (response.status_code, response.text)
    assert response.status_code in (400, 404), response.text
    assert response.json()["error"]["message"]
