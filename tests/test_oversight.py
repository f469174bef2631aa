"""Human oversight through a real `fleetdeck serve`: route stops, overrides, what the gateway audits."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fakes.openai_upstream import FakeOpenAI, Fault
from gateway_process import Served, fleetdeck_serve, trace_of
from gateway_process import run_cli as cli

from console.engine import Engine
from console.gateway.admin import AdminEndpoint
from console.settings import Settings

POLICY = """
providers:
  primary: {{kind: openai_compat, base_url: "{primary}", prices: {{m: {{input: 1, output: 1}}}}}}
  backup: {{kind: openai_compat, base_url: "{backup}", prices: {{m: {{input: 1, output: 1}}}}}}
routes:
  - {{intent: support, primary: primary/m, fallback: [backup/m], max_retries: 0}}
  - {{intent: refunds, primary: backup/m, max_retries: 0}}
breaker: {{consecutive_failures: 3, base_ejection_s: 30}}
default_route: support
"""
HELLO = [{"role": "user", "content": "hello"}]


@pytest.fixture(scope="module")
def policy(upstreams: tuple[FakeOpenAI, FakeOpenAI]) -> str:
    primary, backup = upstreams
    return POLICY.format(primary=primary.base_url, backup=backup.base_url)


def chat(served: Served, route: str) -> httpx.Response:
    body = {"model": f"route:{route}", "messages": HELLO}
    return httpx.post(f"{served.base_url}/chat/completions", json=body, headers=served.auth, timeout=30)


def audit_entries(served: Served, action: str, expected: int = 1) -> list[dict[str, Any]]:
    endpoint = AdminEndpoint.find(served.data_dir)
    assert endpoint is not None
    sql = f"SELECT actor, actor_kind, subject, payload FROM audit_log WHERE action = '{action}' ORDER BY seq"
    deadline = time.monotonic() + 10
    while True:
        rows = endpoint.query({"sql": sql}).to_pylist()
        if len(rows) >= expected or time.monotonic() > deadline:
            return [{**row, "payload": orjson.loads(row["payload"])} for row in rows]
        time.sleep(0.1)


def test_a_stopped_route_refuses_the_next_call_and_resumes(served: Served) -> None:
    assert chat(served, "refunds").status_code == 200
    stopped = cli(served.data_dir, "routes", "stop", "refunds", "--reason", "refunds paid twice")
    assert stopped.returncode == 0, stopped.stderr
    refused = chat(served, "refunds")  # the very next request: the CLI went through the admin API
    assert refused.status_code == 503
    error = refused.json()["error"]
    assert error["code"] == "route_stopped" and "refunds paid twice" in error["message"]
    trace = trace_of(served, refused.headers["x-fleetdeck-request-id"])
    assert (trace["status"], trace["reason_code"]) == ("blocked", "route-stopped")
    assert chat(served, "support").status_code == 200  # other routes go on
    assert cli(served.data_dir, "routes", "resume", "refunds").returncode == 0
    assert chat(served, "refunds").status_code == 200
    stops = audit_entries(served, "route.stopped")
    assert len(stops) == 1 and stops[0]["subject"] == "refunds" and stops[0]["actor_kind"] == "human"
    assert stops[0]["payload"]["reason"] == "refunds paid twice" and "@" in stops[0]["actor"]
    assert len(audit_entries(served, "route.resumed")) == 1


def test_stopping_an_unknown_route_is_refused_clearly(served: Served) -> None:
    done = cli(served.data_dir, "routes", "stop", "refundz", "--reason", "typo")
    assert done.returncode == 2 and "no route 'refundz'" in done.stderr


def test_an_override_is_a_verdict_and_one_audit_entry(served: Served) -> None:
    response = chat(served, "support")
    request_id = response.headers["x-fleetdeck-request-id"]
    done = cli(
        served.data_dir,
        "audit",
        "override",
        "--request",
        request_id,
        "--verdict",
        "incorrect",
        "--reason",
        "wrong refund amount",
    )
    assert done.returncode == 0, done.stderr
    entries = audit_entries(served, "override")
    assert [e["subject"] for e in entries] == [request_id]
    assert entries[0]["payload"]["verdict"] == "incorrect" and entries[0]["actor_kind"] == "human"
    endpoint = AdminEndpoint.find(served.data_dir)
    assert endpoint is not None
    deadline = time.monotonic() + 10
    sql = f"SELECT evaluator, verdict, rationale FROM evals WHERE request_id = '{request_id}'"
    while not (verdicts := endpoint.query({"sql": sql}).to_pylist()):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert verdicts[0]["verdict"] == "incorrect" and verdicts[0]["evaluator"].startswith("human:")


def test_an_outage_audits_the_ejection_and_the_fallback(
    served: Served, upstreams: tuple[FakeOpenAI, FakeOpenAI]
) -> None:
    primary, _ = upstreams
    primary.fail_always(Fault(status=503))
    try:
        for _ in range(6):
            assert chat(served, "support").status_code == 200
    finally:
        primary.clear_faults()
    ejected = audit_entries(served, "breaker.opened")
    assert [(e["subject"], e["actor_kind"]) for e in ejected] == [("primary/m", "system")]
    fallbacks = audit_entries(served, "route.fallback")
    assert (
        fallbacks
        and fallbacks[0]["payload"]["from"] == "primary/m"
        and fallbacks[0]["payload"]["to"] == "backup/m"
    )


def test_the_policy_in_force_is_audited_once_per_change(served: Served) -> None:
    entries = audit_entries(served, "policy.loaded")
    assert len(entries) == 1 and len(entries[0]["payload"]["policy_hash"]) == 64


def test_a_stop_survives_a_restart(tmp_path: Path, upstreams: tuple[FakeOpenAI, FakeOpenAI]) -> None:
    primary, backup = upstreams
    data_dir = tmp_path / "data"
    policy_file = tmp_path / "routes.yaml"
    policy_file.write_text(POLICY.format(primary=primary.base_url, backup=backup.base_url))
    with Engine(Settings(data_dir=data_dir, policy_file=policy_file)) as engine:
        engine.oversight.stop_route("support", "incident 42", actor="oncall@box")
    with fleetdeck_serve(data_dir, policy_file.read_text()) as served:
        refused = chat(served, "support")
        assert refused.status_code == 503 and "incident 42" in refused.text
