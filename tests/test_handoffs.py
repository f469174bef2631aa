"""Contract handoffs through a real `fleetdeck serve`: schema, provenance, gates, consumers, audit.

The judge gate's judge is the fake upstream, which echoes its prompt: a rubric that spells a
verdict out is answered with it, so each judged contract's outcome is known in advance (the
gate's loop is under test here, not a model).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest
from fakes.openai_upstream import FakeOpenAI
from gateway_process import Served, run_cli

POLICY = """
providers:
  lab:
    kind: openai_compat
    base_url: "{url}"
    models: [mock-gpt]
    prices: {{mock-gpt: {{input: 1, output: 2}}}}
routes:
  - {{intent: triage, primary: lab/mock-gpt, max_retries: 0}}
  - {{intent: reply, primary: lab/mock-gpt, max_retries: 0}}
default_route: triage
handoffs:
  triage_to_reply:
    producer: triage
    consumer: reply
    schema:
      type: object
      required: [category, summary]
      properties:
        category: {{enum: [billing, tech]}}
        summary: {{type: string}}
    provenance: [category, summary]
  refund_review:
    consumer: reply
    schema: {{type: object, required: [amount], properties: {{amount: {{type: number}}}}}}
    provenance: [amount]
    gate: {{kind: approval, deadline_s: 120}}
  judged_good:
    schema: {{type: object}}
    gate:
      kind: judge
      judge: lab/mock-gpt
      rubric: 'A payload that names its category. Answer {{"verdict": "correct", "rationale": "named"}}.'
  judged_bad:
    schema: {{type: object}}
    gate:
      kind: judge
      judge: lab/mock-gpt
      rubric: 'A payload with a summary. Answer {{"verdict": "incorrect", "rationale": "no summary"}}.'
"""


@pytest.fixture(scope="module")
def policy(upstream: FakeOpenAI) -> str:
    return POLICY.format(url=upstream.base_url)


@pytest.fixture(scope="module")
def client(served: Served) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.base_url, headers=served.auth, timeout=60) as session:
        yield session


def produce(client: httpx.Client, task: str) -> str:
    """A producer's call in `task`; its request id."""
    body = {
        "model": "route:triage",
        "messages": [{"role": "user", "content": "classify: my card was charged"}],
    }
    answer = client.post("/chat/completions", json=body, headers={"X-Fleetdeck-Task": task})
    assert answer.status_code == 200, answer.text
    return answer.headers["x-fleetdeck-request-id"]


def consume(client: httpx.Client, task: str, handoff_id: str, workflow: str = "reply") -> httpx.Response:
    body = {"model": "route:reply", "messages": [{"role": "user", "content": "write the reply"}]}
    headers = {"X-Fleetdeck-Task": task, "X-Fleetdeck-Handoff": handoff_id, "X-Fleetdeck-Workflow": workflow}
    return client.post("/chat/completions", json=body, headers=headers)


def submit(
    client: httpx.Client, contract: str, task: str, payload: Any, **provenance: list[str]
) -> httpx.Response:
    doc = {"contract": contract, "task_id": task, "payload": payload, "provenance": provenance}
    return client.post("/handoffs", json=doc)


def settled(client: httpx.Client, handoff_id: str) -> dict[str, Any]:
    """The handoff once its gate decided: GET waits for the decision (`?wait=`)."""
    found: dict[str, Any] = client.get(f"/handoffs/{handoff_id}", params={"wait": 30}).json()
    return found


def consume_submitted(
    client: httpx.Client, task: str, contract: str, payload: Any, **provenance: list[str]
) -> httpx.Response:
    """A consumer's call that submits the handoff it consumes, in its metadata."""
    handoff = {"contract": contract, "payload": payload, "provenance": provenance}
    body = {
        "model": "route:reply",
        "messages": [{"role": "user", "content": "write the reply"}],
        "metadata": {"handoff": handoff},
    }
    headers = {"X-Fleetdeck-Task": task, "X-Fleetdeck-Workflow": "reply"}
    return client.post("/chat/completions", json=body, headers=headers)


def test_a_valid_payload_with_real_provenance_is_accepted_and_consumed(client: httpx.Client) -> None:
    source = produce(client, "t-ok")
    answer = submit(
        client,
        "triage_to_reply",
        "t-ok",
        {"category": "billing", "summary": "double charge"},
        category=[source],
        summary=[source],
    )
    assert answer.status_code == 200, answer.text
    handoff = answer.json()
    assert (handoff["status"], handoff["provenance"]) == (
        "accepted",
        {"category": [source], "summary": [source]},
    )
    served = consume(client, "t-ok", handoff["id"])
    assert served.status_code == 200, served.text


@pytest.mark.parametrize(
    ("payload", "provenance", "named"),
    [
        ({"category": "sales", "summary": "x"}, "own", "category: 'sales' is not one of"),
        ({"category": "tech", "summary": "x"}, "other task", "belongs to task 't-other'"),
        ({"category": "tech", "summary": "x"}, "missing", "'req-that-never-was' does not exist"),
        ({"category": "tech", "summary": "x"}, "no summary", "provenance.summary: the contract asks"),
    ],
)
def test_a_payload_failing_its_contract_is_refused_naming_the_problem(
    client: httpx.Client, payload: dict[str, str], provenance: str, named: str
) -> None:
    own, other = produce(client, "t-bad"), produce(client, "t-other")
    cited = {
        "own": {"category": [own], "summary": [own]},
        "other task": {"category": [own], "summary": [other]},
        "missing": {"category": ["req-that-never-was"], "summary": [own]},
        "no summary": {"category": [own]},
    }[provenance]
    answer = submit(client, "triage_to_reply", "t-bad", payload, **cited)
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["code"] == "handoff_refused" and named in error["message"], error
    refused = consume(client, "t-bad", error["handoff"]["id"])
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "handoff_not_accepted"
    assert "was refused" in refused.json()["error"]["message"]


def test_bad_requests_name_what_is_wrong(client: httpx.Client) -> None:
    unknown = submit(client, "no_such_contract", "t-x", {})
    assert unknown.status_code == 400 and unknown.json()["error"]["code"] == "unknown_contract"
    assert "triage_to_reply" in unknown.json()["error"]["message"]
    broken = client.post("/handoffs", content=b'{"contract": ', headers={"Content-Type": "application/json"})
    assert broken.status_code == 400 and broken.json()["error"]["code"] == "invalid_json"
    never = consume(client, "t-x", "hof_nothing")
    assert never.status_code == 409 and "does not exist" in never.json()["error"]["message"]
    assert client.get("/handoffs/hof_nothing").status_code == 404


def test_a_consumer_of_another_workflow_or_task_is_refused(client: httpx.Client) -> None:
    source = produce(client, "t-mine")
    handoff = submit(
        client,
        "triage_to_reply",
        "t-mine",
        {"category": "tech", "summary": "s"},
        category=[source],
        summary=[source],
    ).json()
    wrong_task = consume(client, "t-theirs", handoff["id"])
    wrong_workflow = consume(client, "t-mine", handoff["id"], workflow="billing-bot")
    for answer, named in ((wrong_task, "belongs to task"), (wrong_workflow, "is for the workflow 'reply'")):
        assert answer.status_code == 409 and named in answer.json()["error"]["message"], answer.text


def test_an_approval_gate_holds_until_a_human_decides_each_way(client: httpx.Client, served: Served) -> None:
    source = produce(client, "t-refund")
    held = submit(client, "refund_review", "t-refund", {"amount": 40.0}, amount=[source])
    assert held.status_code == 202 and held.json()["status"] == "held", held.text
    approval_id = held.json()["gate"]["approval_id"]
    assert (
        consume(client, "t-refund", held.json()["id"])
        .json()["error"]["message"]
        .endswith("is still held by its gate: a call may cite only an accepted handoff")
    )
    listed = run_cli(served.data_dir, "approvals", "list")
    assert approval_id in listed.stdout and "handoff:refund_review" in listed.stdout, listed.stdout
    assert run_cli(served.data_dir, "approvals", "approve", approval_id).returncode == 0
    assert settled(client, held.json()["id"])["status"] == "accepted"
    assert consume(client, "t-refund", held.json()["id"]).status_code == 200

    denied = submit(client, "refund_review", "t-refund", {"amount": 9000.0}, amount=[source]).json()
    assert run_cli(served.data_dir, "approvals", "deny", denied["gate"]["approval_id"]).returncode == 0
    assert settled(client, denied["id"])["status"] == "refused"


@pytest.mark.parametrize(("contract", "status"), [("judged_good", "accepted"), ("judged_bad", "refused")])
def test_a_judge_gate_accepts_or_refuses_by_the_judges_verdict(
    client: httpx.Client, contract: str, status: str
) -> None:
    answer = submit(client, contract, "t-judged", {"category": "tech"})
    assert answer.status_code == 202, answer.text
    assert settled(client, answer.json()["id"])["status"] == status


def test_every_decision_is_audited_and_the_evidence_pack_lists_every_handoff(
    client: httpx.Client, served: Served, tmp_path: Path
) -> None:
    source = produce(client, "t-evidence")
    for category in ("tech", "unknown"):  # one accepted, one refused
        submit(
            client,
            "triage_to_reply",
            "t-evidence",
            {"category": category, "summary": "s"},
            category=[source],
            summary=[source],
        )
    verified = run_cli(served.data_dir, "audit", "verify")
    assert verified.returncode == 0, verified.stderr
    listed = run_cli(served.data_dir, "query", "--name", "handoffs", "--format", "csv")
    assert listed.returncode == 0, listed.stderr
    submitted = len(listed.stdout.strip().splitlines()) - 1
    assert submitted >= 2
    pack = run_cli(served.data_dir, "audit", "export", "--out", str(tmp_path / "pack"))
    assert pack.returncode == 0, pack.stderr
    handoffs = pq.read_table(tmp_path / "pack" / "handoffs.parquet")
    assert handoffs.num_rows == submitted
    assert {"accepted", "refused"} <= set(handoffs.column("status").to_pylist())
    assert "Handoffs between agents" in (tmp_path / "pack" / "SUMMARY.md").read_text()


def test_a_handoff_submitted_with_the_consumers_call_is_checked_then_consumed(
    client: httpx.Client, upstream: FakeOpenAI
) -> None:
    source = produce(client, "t-inline")
    payload = {"category": "billing", "summary": "double charge"}
    served = consume_submitted(
        client, "t-inline", "triage_to_reply", payload, category=[source], summary=[source]
    )
    assert served.status_code == 200, served.text
    assert "handoff" not in str(upstream.requests[-1].body.get("metadata", {}))  # Fleetdeck's own, kept home
    handoff = client.get(f"/handoffs/{served.headers['x-fleetdeck-handoff']}").json()
    assert (handoff["status"], handoff["provenance"]) == (
        "accepted",
        {"category": [source], "summary": [source]},
    )

    bad = consume_submitted(client, "t-inline", "triage_to_reply", {"category": "billing"}, category=[source])
    assert bad.status_code == 422, bad.text
    assert bad.json()["error"]["code"] == "handoff_refused" and "'summary' is a required" in bad.text
    assert client.get(f"/handoffs/{bad.headers['x-fleetdeck-handoff']}").json()["status"] == "refused"


def test_a_submitted_handoff_held_for_approval_refuses_the_call_naming_it(
    client: httpx.Client, served: Served
) -> None:
    source = produce(client, "t-inline-refund")
    held = consume_submitted(client, "t-inline-refund", "refund_review", {"amount": 12.5}, amount=[source])
    assert held.status_code == 409 and held.json()["error"]["code"] == "handoff_not_accepted", held.text
    handoff_id = held.headers["x-fleetdeck-handoff"]
    assert handoff_id in held.json()["error"]["message"] and "approval" in held.json()["error"]["message"]
    approval_id = client.get(f"/handoffs/{handoff_id}").json()["gate"]["approval_id"]
    assert run_cli(served.data_dir, "approvals", "approve", approval_id).returncode == 0
    assert settled(client, handoff_id)["status"] == "accepted"
    assert consume(client, "t-inline-refund", handoff_id).status_code == 200


def test_a_reader_waits_for_the_gate_only_as_long_as_it_asks(client: httpx.Client) -> None:
    source = produce(client, "t-wait")
    held = submit(client, "refund_review", "t-wait", {"amount": 1.0}, amount=[source]).json()
    still = client.get(f"/handoffs/{held['id']}", params={"wait": 0})
    assert still.status_code == 202 and still.json()["status"] == "held"
    for wrong in ("-1", "61", "soon", "nan"):
        answer = client.get(f"/handoffs/{held['id']}", params={"wait": wrong})
        assert answer.status_code == 400 and answer.json()["error"]["param"] == "wait", answer.text
