"""OTLP export (issue 20, point 1): a real `fleetdeck serve` over the fake OpenAI upstream,
exporting to a real OTLP/HTTP receiver on loopback that decodes the protobuf."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest
from fakes.anthropic_upstream import FakeAnthropic
from fakes.openai_upstream import FakeOpenAI, Fault
from fakes.otlp_receiver import OtlpReceiver, ReceivedSpan
from gateway_process import Served, fleetdeck_serve, rows_once_there, trace_of

from console.errors import Invalid
from console.otel.config import ExportConfig, export_config
from console.otel.exporter import OtlpExport
from console.policy import OtlpConfig, PolicyError, parse_policy
from console.store.trace import Trace
from console.tracecontext import call_span

POLICY = """
providers:
  lab: {{kind: openai_compat, base_url: "{url}", prices: {{m: {{input: 3.0, output: 15.0}}}}}}
  claude: {{kind: anthropic, base_url: "{claude}", secret: claude, models: [claude-sonnet-4-5]}}
routes:
  - {{intent: support, primary: lab/m}}
  - {{intent: claude, primary: claude/claude-sonnet-4-5}}
otlp: {{{otlp}}}
"""
APP_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
APP_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{APP_TRACE}-{APP_SPAN}-01"
CANARY = "jane.canary@example.com"  # PII: redacted before anything is stored or exported
FAST = {
    "OTEL_BSP_SCHEDULE_DELAY": "50",
    "OTEL_SERVICE_NAME": "fleetdeck-tests",
    "FLEETDECK_SECRET_CLAUDE": "sk-ant-test",
}


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as found:
        yield found


@pytest.fixture(scope="module")
def claude() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as server:
        yield server


def otlp_policy(upstream: FakeOpenAI, otlp: str, claude: FakeAnthropic | None = None) -> str:
    claude_url = claude.base_url if claude is not None else "http://127.0.0.1:9"
    return POLICY.format(url=upstream.base_url, claude=claude_url, otlp=otlp)


@pytest.fixture(scope="module")
def policy(upstream: FakeOpenAI, claude: FakeAnthropic, receiver: OtlpReceiver) -> str:
    return otlp_policy(upstream, f'endpoint: "{receiver.url}", metrics_interval_s: 0.2', claude)


@pytest.fixture(scope="module")
def served_env() -> dict[str, str]:
    return FAST


def chat(served: Served, text: str, headers: dict[str, str] | None = None, **extra: Any) -> httpx.Response:
    response = httpx.post(
        f"{served.base_url}/chat/completions",
        json={"model": "route:support", "messages": [{"role": "user", "content": text}], **extra},
        headers={**served.auth, **(headers or {})},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return response


def span_of(receiver: OtlpReceiver, request_id: str) -> ReceivedSpan:
    return receiver.wait_for_span(lambda s: s.attributes.get("fleetdeck.request_id") == request_id)


def test_a_call_is_one_genai_span_in_the_apps_trace(
    served: Served, upstream: FakeOpenAI, receiver: OtlpReceiver
) -> None:
    headers = {"traceparent": TRACEPARENT, "X-Fleetdeck-Session": "conv-7", "X-Fleetdeck-Task": "t-1"}
    response = chat(served, f"Write to {CANARY} about the refund", headers)
    request_id = response.headers["x-fleetdeck-request-id"]
    usage = response.json()["usage"]

    span = span_of(receiver, request_id)
    stored = trace_of(served, request_id)
    attributes = span.attributes
    assert span.name == "chat route:support"
    assert (span.trace_id, span.parent_span_id) == (APP_TRACE, APP_SPAN)
    assert span.kind == 3 and span.status_code == 0  # CLIENT; unset: it succeeded
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.provider.name"] == "lab"
    assert attributes["gen_ai.request.model"] == "route:support"
    assert attributes["gen_ai.response.model"] == "m"
    assert attributes["gen_ai.usage.input_tokens"] == usage["prompt_tokens"] == stored["input_tokens"]
    assert attributes["gen_ai.usage.output_tokens"] == usage["completion_tokens"] == stored["output_tokens"]
    assert attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert attributes["gen_ai.conversation.id"] == "conv-7"
    assert attributes["server.address"] == "127.0.0.1"
    assert attributes["server.port"] == upstream.port
    assert "error.type" not in attributes
    assert stored["cost_usd"] and attributes["fleetdeck.cost_usd"] == pytest.approx(stored["cost_usd"])
    assert attributes["fleetdeck.route"] == "support"
    assert attributes["fleetdeck.reason_code"] == stored["reason_code"]
    assert attributes["fleetdeck.environment"] == "dev"
    assert attributes["fleetdeck.protocol"] == "chat_completions"
    assert attributes["fleetdeck.task_id"] == "t-1"
    assert span.resource["service.name"] == "fleetdeck-tests"
    assert span.end_ns - span.start_ns == pytest.approx(stored["latency_ms"] * 1e6, rel=0.2, abs=2e6)

    sent = next(r for r in upstream.requests if "refund" in str(r.body))
    assert sent.headers["traceparent"] == f"00-{APP_TRACE}-{span.span_id}-01"
    assert not any(k.startswith("gen_ai.input") or k.startswith("gen_ai.output") for k in attributes)
    assert all(CANARY.encode() not in raw for raw in receiver.raw)


def test_a_stream_is_one_span_and_its_upstream_is_told_of_it(
    served: Served, upstream: FakeOpenAI, receiver: OtlpReceiver
) -> None:
    with httpx.stream(
        "POST",
        f"{served.base_url}/chat/completions",
        json={
            "model": "route:support",
            "messages": [{"role": "user", "content": "stream me"}],
            "stream": True,
        },
        headers={**served.auth, "traceparent": TRACEPARENT},
        timeout=30,
    ) as response:
        assert response.status_code == 200
        request_id = response.headers["x-fleetdeck-request-id"]
        response.read()
    span = span_of(receiver, request_id)
    assert span.attributes["gen_ai.request.stream"] is True
    assert span.attributes["gen_ai.response.time_to_first_chunk"] > 0
    assert span.parent_span_id == APP_SPAN
    sent = [r for r in upstream.requests if r.body and r.body.get("stream")]
    assert sent[-1].headers["traceparent"] == f"00-{APP_TRACE}-{span.span_id}-01"


def test_the_anthropic_upstream_is_told_of_the_span_too(
    served: Served, claude: FakeAnthropic, receiver: OtlpReceiver
) -> None:
    sdk = anthropic.Anthropic(
        base_url=served.url, api_key=served.key, max_retries=0, default_headers={"traceparent": TRACEPARENT}
    )
    raw = sdk.messages.with_raw_response.create(
        model="route:claude", max_tokens=16, messages=[{"role": "user", "content": "hello claude"}]
    )
    request_id = raw.headers["x-fleetdeck-request-id"]
    span = span_of(receiver, request_id)
    assert span.attributes["gen_ai.provider.name"] == "anthropic"
    assert span.attributes["fleetdeck.protocol"] == "messages"
    assert (span.trace_id, span.parent_span_id) == (APP_TRACE, APP_SPAN)
    assert claude.requests[-1].headers["traceparent"] == f"00-{APP_TRACE}-{span.span_id}-01"


def test_without_a_traceparent_the_span_is_a_root_and_failures_are_errors(
    served: Served, upstream: FakeOpenAI, receiver: OtlpReceiver
) -> None:
    response = chat(served, "no parent here")
    span = span_of(receiver, response.headers["x-fleetdeck-request-id"])
    assert span.parent_span_id == ""

    refused = httpx.post(
        f"{served.base_url}/chat/completions",
        json={"model": "route:nowhere", "messages": [{"role": "user", "content": "hi"}]},
        headers=served.auth,
        timeout=30,
    )
    assert refused.status_code >= 400
    failed = span_of(receiver, refused.headers["x-fleetdeck-request-id"])
    unknown_key = httpx.post(
        f"{served.base_url}/chat/completions",
        json={"model": "route:support", "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": "Bearer sk-fd-nobody", "traceparent": TRACEPARENT},
        timeout=30,
    )
    assert unknown_key.status_code == 401
    refused_span = span_of(receiver, unknown_key.headers["x-fleetdeck-request-id"])
    assert refused_span.status_code == 2 and refused_span.parent_span_id == APP_SPAN
    assert failed.status_code == 2
    assert (
        failed.attributes["error.type"]
        == trace_of(served, failed.attributes["fleetdeck.request_id"])["error_type"]
    )


def test_cache_reads_reasoning_and_request_parameters_have_their_convention_names(
    served: Served, upstream: FakeOpenAI, receiver: OtlpReceiver
) -> None:
    upstream.cached_tokens, upstream.reasoning_tokens = 2, 3
    try:
        response = chat(served, "think about these five words", temperature=0.3, max_tokens=40, seed=7)
    finally:
        upstream.cached_tokens = upstream.reasoning_tokens = 0
    attributes = span_of(receiver, response.headers["x-fleetdeck-request-id"]).attributes
    assert attributes["gen_ai.usage.cache_read.input_tokens"] == 2
    assert attributes["gen_ai.usage.reasoning.output_tokens"] == 3
    assert attributes["gen_ai.request.temperature"] == 0.3
    assert attributes["gen_ai.request.max_tokens"] == 40
    assert attributes["gen_ai.request.seed"] == 7
    assert attributes["gen_ai.response.id"] == response.json()["id"]


def test_fleetdeck_parents_join_one_trace_and_an_unsampled_parent_is_not_exported(
    served: Served, upstream: FakeOpenAI, receiver: OtlpReceiver
) -> None:
    first = chat(served, "the first call").headers["x-fleetdeck-request-id"]
    parent = span_of(receiver, first)
    child_headers = {"X-Fleetdeck-Trace": first, "X-Fleetdeck-Parent": first}  # as the judge calls
    quiet = chat(served, "an unsampled call", {"traceparent": f"00-{APP_TRACE}-{APP_SPAN}-00"})
    assert upstream.requests[-1].headers["traceparent"].endswith("-00")
    child = chat(served, "the child call", child_headers).headers["x-fleetdeck-request-id"]
    joined = span_of(receiver, child)
    assert (joined.trace_id, joined.parent_span_id) == (parent.trace_id, parent.span_id)
    unsampled = quiet.headers["x-fleetdeck-request-id"]  # offered before the child, in one queue
    assert not any(s.attributes.get("fleetdeck.request_id") == unsampled for s in receiver.spans)

    garbled = chat(served, "a bad traceparent", {"traceparent": "00-zz-yy-01"})
    root = span_of(receiver, garbled.headers["x-fleetdeck-request-id"])
    assert root.parent_span_id == "" and root.trace_id != APP_TRACE


def test_an_upstream_failure_is_an_error_span_and_an_error_duration_point(
    served: Served, upstream: FakeOpenAI, receiver: OtlpReceiver
) -> None:
    upstream.faults.fail_always(Fault(status=400, message="no such thing"))
    try:
        response = httpx.post(
            f"{served.base_url}/chat/completions",
            json={"model": "route:support", "messages": [{"role": "user", "content": "fail me"}]},
            headers=served.auth,
            timeout=30,
        )
    finally:
        upstream.faults.clear()
    assert response.status_code == 400
    request_id = response.headers["x-fleetdeck-request-id"]
    span = span_of(receiver, request_id)
    stored = trace_of(served, request_id)
    assert span.status_code == 2 and span.status_message == stored["error_type"]
    assert span.attributes["error.type"] == stored["error_type"]
    assert span.attributes["server.address"] == "127.0.0.1"
    points = receiver.wait_for_metric(
        "gen_ai.client.operation.duration", lambda p: p.attributes.get("error.type") == stored["error_type"]
    )
    assert points[0].attributes["gen_ai.operation.name"] == "chat"


def test_the_client_metrics_arrive_by_token_type(served: Served, receiver: OtlpReceiver) -> None:
    chat(served, "count my tokens")
    tokens = receiver.wait_for_metric("gen_ai.client.token.usage")
    assert {p.attributes["gen_ai.token.type"] for p in tokens} >= {"input", "output"}
    assert all(p.unit == "{token}" and p.attributes["gen_ai.operation.name"] == "chat" for p in tokens)
    duration = receiver.wait_for_metric("gen_ai.client.operation.duration")
    assert duration[0].unit == "s" and duration[0].attributes["gen_ai.response.model"] == "m"


def test_content_is_exported_only_when_opted_in_and_redacted(
    upstream: FakeOpenAI, receiver: OtlpReceiver, tmp_path: Path
) -> None:
    policy = otlp_policy(upstream, f'endpoint: "{receiver.url}", capture_content: true')
    with fleetdeck_serve(tmp_path / "data", policy, FAST) as served:
        response = chat(served, f"Mail {CANARY} the invoice")
        span = span_of(receiver, response.headers["x-fleetdeck-request-id"])
    messages = span.attributes["gen_ai.input.messages"]
    assert "the invoice" in messages and CANARY not in messages
    assert "gen_ai.output.messages" in span.attributes
    assert all(CANARY.encode() not in raw for raw in receiver.raw)


def test_a_verdict_is_an_evaluation_event_under_the_judged_span(
    upstream: FakeOpenAI, receiver: OtlpReceiver, tmp_path: Path
) -> None:
    judge = "eval: {sample_rate: 1, judge: lab/m, environments: [dev]}\n"
    policy = otlp_policy(upstream, f'endpoint: "{receiver.url}"') + judge
    with fleetdeck_serve(tmp_path / "data", policy, FAST) as served:
        response = chat(served, 'Grade me: {"verdict": "correct", "rationale": "fine"}')
        request_id = response.headers["x-fleetdeck-request-id"]
        span = span_of(receiver, request_id)
        event = receiver.wait_for_event(lambda e: e.attributes.get("fleetdeck.request_id") == request_id)
        (verdict,) = rows_once_there(
            served, f"SELECT * FROM evals WHERE request_id = '{request_id}'", "no verdict"
        )
    assert event.name == "gen_ai.evaluation.result"
    assert (event.trace_id, event.span_id) == (span.trace_id, span.span_id)
    assert event.attributes["gen_ai.evaluation.score.label"] == verdict["verdict"]
    assert event.attributes["gen_ai.evaluation.name"] == verdict["rubric"]
    assert "gen_ai.evaluation.explanation" not in event.attributes  # content capture is off
    judge_call = span_of(receiver, verdict["judge_request_id"])
    assert (judge_call.trace_id, judge_call.parent_span_id) == (span.trace_id, span.span_id)


def test_the_standard_environment_variables_configure_it(
    upstream: FakeOpenAI, receiver: OtlpReceiver, tmp_path: Path
) -> None:
    env = {**FAST, "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_EXPORTER_OTLP_HEADERS": "x-team=ops"}
    with fleetdeck_serve(tmp_path / "data", otlp_policy(upstream, ""), env) as served:
        response = chat(served, "configured by the environment")
        span_of(receiver, response.headers["x-fleetdeck-request-id"])
    assert any(h.get("x-team") == "ops" for h in receiver.headers)


def test_with_the_collector_down_calls_succeed_and_drops_are_counted(
    upstream: FakeOpenAI, tmp_path: Path
) -> None:
    with OtlpReceiver() as closed:
        down = closed.url  # the port is closed once the receiver has stopped
    policy = otlp_policy(upstream, f'endpoint: "{down}", timeout_s: 0.5')
    with fleetdeck_serve(tmp_path / "data", policy, FAST) as served:
        for n in range(3):
            chat(served, f"call {n} while the collector is down")

        def health() -> dict[str, Any]:
            found: dict[str, Any] = httpx.get(f"{served.url}/healthz", timeout=10).json()["otlp"]
            return found

        assert upstream.wait_until(lambda: health()["dropped"] >= 3, timeout=30)


def test_a_full_queue_drops_the_newest_and_counts_it(receiver: OtlpReceiver) -> None:
    config = ExportConfig(f"{receiver.url}/v1/traces", None, queue_size=2, timeout_s=5)
    export = OtlpExport(config, {})
    receiver.hold()
    try:
        calls = [Trace(operation="chat", status="ok", request_model=f"held-{n}") for n in range(3)]
        for trace in calls[:2]:
            export.offer(trace, call_span(trace.request_id, None, None, None), None, None)
        assert receiver.wait_until(lambda: receiver.waiting >= 1)  # the batch of two is on its way
        export.offer(calls[2], call_span(calls[2].request_id, None, None, None), None, None)
        assert export.stats()["dropped_queue_full"] == 1
    finally:
        receiver.release()
    receiver.wait_for_span(lambda s: s.attributes.get("gen_ai.request.model") == "held-1")
    export.shutdown()
    assert export.stats() | {"endpoint": None} == {
        "endpoint": None,
        "queued": 0,
        "exported": 2,
        "dropped": 1,
        "dropped_queue_full": 1,
        "dropped_export_failed": 0,
        "failed": 0,
    }
    assert not any(s.attributes.get("gen_ai.request.model") == "held-2" for s in receiver.spans)


def test_off_without_an_endpoint_and_with_the_sdk_disabled(receiver: OtlpReceiver) -> None:
    assert export_config(OtlpConfig(), env={}) is None
    assert export_config(OtlpConfig(), env={"OTEL_SERVICE_NAME": "x"}) is None
    on = OtlpConfig(endpoint=receiver.url)
    assert export_config(on, env={"OTEL_SDK_DISABLED": "true"}) is None
    traces_only = export_config(OtlpConfig(), env={"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{receiver.url}/t"})
    assert traces_only is not None and traces_only.metrics_endpoint is None


def test_the_policys_endpoint_wins_and_a_bad_otlp_section_is_refused_with_its_line(
    receiver: OtlpReceiver,
) -> None:
    resolved = export_config(
        OtlpConfig(endpoint=receiver.url), env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}
    )
    assert resolved is not None
    assert (resolved.traces_endpoint, resolved.metrics_endpoint) == (
        f"{receiver.url}/v1/traces",
        f"{receiver.url}/v1/metrics",
    )
    base = "providers:\n  local: {kind: local, model_path: default, model_name: smollm2-135m}\n"
    with pytest.raises(PolicyError) as typo:
        parse_policy(base + "otlp:\n  endpont: http://127.0.0.1:4318\n", "routes.yaml")
    assert "routes.yaml:4" in str(typo.value) and "endpoint" in str(typo.value)
    with pytest.raises(PolicyError, match=r"otlp\.endpoint"):
        parse_policy(base + "otlp: {endpoint: collector:4318}\n", "routes.yaml")


def test_a_header_names_a_keyring_secret_and_a_missing_one_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, receiver: OtlpReceiver
) -> None:
    config = OtlpConfig.model_validate(
        {"endpoint": receiver.url, "headers": {"x-honeycomb-team": {"secret": "otlp-team-key"}}}
    )
    with pytest.raises(Invalid, match="otlp-team-key"):
        export_config(config, env={})
    monkeypatch.setenv("FLEETDECK_SECRET_OTLP_TEAM_KEY", "s3cret")
    resolved = export_config(config, env={})
    assert resolved is not None and resolved.headers == {"x-honeycomb-team": "s3cret"}
    assert "s3cret" not in repr(resolved)
