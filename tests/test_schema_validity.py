"""Output schema validity: the answer checked against the schema the request or route asks for."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from fakes.openai_upstream import FakeOpenAI
from gateway_process import Served, trace_of

from console.guards.schema import InvalidSchema, check_answers, check_output, requested_schema
from console.policy import PolicyError, parse_policy

INVOICE = {
    "type": "object",
    "properties": {"invoice": {"type": "string"}, "total": {"type": "number", "minimum": 0}},
    "required": ["invoice", "total"],
}
POLICY = """
providers:
  lab: {{kind: openai_compat, base_url: "{url}", prices: {{m: {{input: 1, output: 1}}}}}}
routes:
  - {{intent: chat, primary: lab/m}}
  - intent: extract_invoice
    primary: lab/m
    output_schema: {schema}
default_route: chat
"""


def test_an_answer_matching_the_schema_is_valid() -> None:
    assert check_output('{"invoice": "A-1", "total": 12.5}', INVOICE).valid


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        ('{"invoice": "A-1"}', "'total' is a required property"),
        ('{"invoice": "A-1", "total": -3}', "total: -3 is less than the minimum of 0"),
        ('```json\n{"invoice": "A-1", "total": 1}\n```', "not JSON"),
        ("", "the answer is empty"),
    ],
)
def test_an_answer_that_misses_the_schema_says_why(answer: str, problem: str) -> None:
    verdict = check_output(answer, INVOICE)
    assert not verdict.valid
    assert verdict.error is not None and problem in verdict.error


def test_every_choice_must_match() -> None:
    verdict = check_answers(['{"invoice": "A", "total": 1}', '{"total": 1}'], INVOICE)
    assert not verdict.valid and verdict.error is not None and verdict.error.startswith("choice 1:")


def test_the_request_names_its_schema() -> None:
    as_schema = {"type": "json_schema", "json_schema": {"name": "inv", "schema": INVOICE}}
    assert requested_schema({"response_format": as_schema}) == INVOICE
    assert requested_schema({"response_format": {"type": "json_object"}}) == {"type": "object"}
    assert requested_schema({"response_format": {"type": "text"}}) is None
    with pytest.raises(InvalidSchema, match="not a valid JSON Schema"):
        requested_schema({"response_format": {"type": "json_schema", "json_schema": {"schema": {"type": 3}}}})


@pytest.fixture(scope="module")
def policy(upstream: FakeOpenAI) -> str:
    return POLICY.format(url=upstream.base_url, schema=json.dumps(INVOICE))


def chat(served: Served, answer: Any, **extra: Any) -> httpx.Response:
    """The fake upstream echoes the last user message: `answer` is what the model says."""
    text = answer if isinstance(answer, str) else json.dumps(answer)
    body = {"messages": [{"role": "user", "content": text}], "max_tokens": 200, **extra}
    body.setdefault("model", "route:chat")
    return httpx.post(f"{served.base_url}/chat/completions", json=body, headers=served.auth, timeout=30)


def checked(served: Served, response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    trace = trace_of(served, response.headers["x-fleetdeck-request-id"])
    return {"valid": trace["schema_valid"], **json.loads(trace["guard_results"])["output_schema"]}


def json_schema(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "invoice", "schema": schema}}


def test_the_trace_says_whether_the_answer_matched_the_requested_schema(served: Served) -> None:
    good = checked(served, chat(served, {"invoice": "A-1", "total": 3}, response_format=json_schema(INVOICE)))
    bad = checked(served, chat(served, {"invoice": "A-1"}, response_format=json_schema(INVOICE)))
    assert good == {"valid": True, "error": None}
    assert bad["valid"] is False and "'total' is a required property" in bad["error"]


def test_a_route_declares_the_schema_of_its_answers(served: Served) -> None:
    route = "route:extract_invoice"
    assert checked(served, chat(served, {"invoice": "B", "total": 1}, model=route))["valid"] is True
    assert checked(served, chat(served, "the total is 12 dollars", model=route))["valid"] is False


def test_a_request_without_a_schema_is_not_judged(served: Served) -> None:
    response = chat(served, "hello there")
    trace = trace_of(served, response.headers["x-fleetdeck-request-id"])
    assert trace["schema_valid"] is None
    assert "output_schema" not in json.loads(trace["guard_results"])


def test_a_streamed_answer_is_checked_once_it_is_whole(served: Served) -> None:
    response = chat(served, {"invoice": "C", "total": 2}, response_format=json_schema(INVOICE), stream=True)
    assert response.status_code == 200 and response.text.endswith("data: [DONE]\n\n")
    assert checked(served, response)["valid"] is True


def test_an_invalid_requested_schema_is_refused_and_traced(served: Served) -> None:
    response = chat(served, "{}", response_format=json_schema({"type": "not-a-type"}))
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "response_format" and "not a valid JSON Schema" in error["message"]
    trace = trace_of(served, response.headers["x-fleetdeck-request-id"])
    assert trace["status"] == "error" and trace["http_status"] == 400


def test_the_policy_refuses_an_invalid_route_schema() -> None:
    text = POLICY.format(url="http://127.0.0.1:9/v1", schema='{"type": "nope"}')
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, "routes.yaml")
    assert str(caught.value).startswith("routes.yaml:8: routes[1].output_schema: ")
    assert "not a valid JSON Schema" in str(caught.value)
