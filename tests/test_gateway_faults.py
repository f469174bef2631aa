"""The gateway against fake upstreams with injected faults, through a real `fleetdeck serve`."""

from __future__ import annotations

import functools
import itertools
import resource
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest
from fakes.openai_upstream import FakeOpenAI, Fault
from gateway_process import Served, fleetdeck_serve, stored_traces, trace_of

POLICY = """
providers:
  lab:
    kind: openai_compat
    base_url: {primary}
    prices: {{mock-gpt: {{input: 1.0, output: 2.0}}}}
  backup:
    kind: openai_compat
    base_url: {backup}
    prices: {{mock-gpt: {{input: 1.0, output: 2.0}}}}
routes:
  - intent: support
    primary: lab/mock-gpt
    fallback: [backup/mock-gpt]
    max_retries: 2
    timeouts: {{first_token_s: 2, idle_s: 2, total_s: 3}}
  - intent: alone
    primary: lab/mock-gpt
    max_retries: 1
    timeouts: {{first_token_s: 2, idle_s: 2, total_s: 3}}
  - intent: patient
    primary: lab/mock-gpt
    max_retries: 0
    timeouts: {{first_token_s: 20, idle_s: 1, total_s: 30}}
breaker: {{consecutive_failures: 3, min_requests: 1000, base_ejection_s: {ejection_s}, max_ejection_s: 600}}
retry: {{backoff_base_s: 0.01, backoff_max_s: 0.05}}
"""
HELLO = [{"role": "user", "content": "hello there"}]
requests_sent = itertools.count()


@pytest.fixture
def ejection_s() -> float:
    """The breaker's base ejection; a test parametrises it to see an ejection lapse."""
    return 600


@pytest.fixture
def gateway_policy(upstreams: tuple[FakeOpenAI, FakeOpenAI], ejection_s: float) -> str:
    primary, backup = upstreams
    return POLICY.format(primary=primary.base_url, backup=backup.base_url, ejection_s=ejection_s)


@pytest.fixture
def gateway_dir(gateway_dir: Path) -> Iterator[Path]:
    before = next(requests_sent)
    yield gateway_dir
    # `gateway` has stopped: its store can be opened
    sent = next(requests_sent) - before - 1
    assert len(stored_traces(gateway_dir, "request_id")) == sent, "one trace per request"


def chat(served: Served, model: str = "route:support", **extra: object) -> httpx.Response:
    next(requests_sent)
    body = {"model": model, "messages": HELLO, **extra}
    return httpx.post(f"{served.base_url}/chat/completions", json=body, headers=served.auth, timeout=30)


def test_429_retry_after_is_honoured(gateway: Served, upstreams: tuple[FakeOpenAI, FakeOpenAI]) -> None:
    primary, backup = upstreams
    primary.fail_next(1, Fault(status=429, retry_after=1))
    response = chat(gateway)
    assert response.status_code == 200
    first, second = primary.requests[-2:]
    assert second.ts - first.ts >= 1.0, "the retry waited for Retry-After"
    assert backup.request_count == 0
    trace = trace_of(gateway, response.headers["x-fleetdeck-request-id"])
    log = orjson.loads(str(trace["attempt_log"]))
    assert [(a["status"], a.get("error_type"), a.get("retry_after_s")) for a in log] == [
        ("error", "rate_limited", 1.0),
        ("ok", None, None),
    ]
    assert trace["attempts"] == 2 and trace["reason_code"] == "primary"


def test_a_503_storm_opens_the_breaker_and_the_fallback_serves(
    gateway: Served, upstreams: tuple[FakeOpenAI, FakeOpenAI]
) -> None:
    primary, backup = upstreams
    primary.fail_always(Fault(status=503))
    with ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(lambda _: chat(gateway), range(1000)))
    served_ok = [r for r in responses if r.status_code == 200]
    assert len(served_ok) >= 999
    assert all(r.headers["x-fleetdeck-model"] == "backup/mock-gpt" for r in served_ok)
    assert backup.request_count == len(served_ok)
    # Before the breaker opened, at most every in-flight request tried the primary 3 times.
    assert primary.request_count <= 3 + 16 * 3, "the ejected primary got traffic"
    tail = responses[-100:]
    assert {r.headers["x-fleetdeck-reason"] for r in tail} == {"provider-outage-fallback"}
    trace = trace_of(gateway, tail[-1].headers["x-fleetdeck-request-id"])
    log = orjson.loads(str(trace["attempt_log"]))
    assert log[0]["status"] == "skipped" and log[0]["error_type"] == "breaker_open"


@pytest.mark.parametrize("ejection_s", [0.5])  # overrides the fixture for `gateway` too
def test_an_ejected_primary_is_probed_back_after_recovery(
    gateway: Served, upstreams: tuple[FakeOpenAI, FakeOpenAI], ejection_s: float
) -> None:
    primary, backup = upstreams
    primary.fail_always(Fault(status=503))
    for _ in range(3):
        chat(gateway)
    assert primary.request_count == 3 and backup.request_count == 3, "ejected after 3 failures"
    primary.clear_faults()
    probed = first_served_by(gateway, "lab/mock-gpt")  # the ejection lapses: a call probes the primary
    assert probed.headers["x-fleetdeck-model"] == "lab/mock-gpt"
    assert primary.request_count == 4, "the ejected primary got no call before its probe"
    assert chat(gateway).headers["x-fleetdeck-model"] == "lab/mock-gpt"


def first_served_by(served: Served, model: str, timeout_s: float = 30.0) -> httpx.Response:
    """Calls one after another until `model` answers one (the backup answers the others)."""
    deadline = time.monotonic() + timeout_s
    while True:
        response = chat(served)
        assert response.status_code == 200, response.text
        if response.headers["x-fleetdeck-model"] == model:
            return response
        assert response.headers["x-fleetdeck-model"] == "backup/mock-gpt"
        assert time.monotonic() < deadline, f"{model} answered no call within {timeout_s} s"
        time.sleep(0.05)  # paces the calls; the condition is what the loop waits for


def test_the_deadline_bounds_retries_and_fallbacks(
    gateway: Served, upstreams: tuple[FakeOpenAI, FakeOpenAI]
) -> None:
    primary, backup = upstreams
    primary.fail_always(Fault(delay_s=10))
    backup.fail_always(Fault(delay_s=10))
    response = chat(gateway)
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "upstream_timeout"
    trace = trace_of(gateway, response.headers["x-fleetdeck-request-id"])
    log = orjson.loads(str(trace["attempt_log"]))
    assert {a["provider"] for a in log} == {"lab", "backup"}, "the primary's slice left time for the fallback"
    # total_s (3 s) covers every attempt together: the primary's half (1.5 s) runs out before
    # its first_token_s (2 s) and leaves no time for its 2 retries; the backup gets the rest.
    # Were each attempt bounded by first_token_s alone, or the primary's slice the whole
    # deadline, the primary would be tried again before the backup.
    assert [(a["provider"], a["status"], a.get("error_type")) for a in log] == [
        ("lab", "error", "timeout"),
        ("backup", "error", "timeout"),
    ]
    assert trace["error_type"] == "upstream_timeout" and trace["attempts"] == 2


@pytest.mark.parametrize(
    ("fault", "code"),
    [
        (Fault(reset=True), "upstream_connection"),
        (Fault(malformed=True), "upstream_bad_response"),
        (Fault(cut_body=True), "upstream_connection"),
    ],
)
def test_broken_upstreams_give_a_clean_502(
    gateway: Served, upstreams: tuple[FakeOpenAI, FakeOpenAI], fault: Fault, code: str
) -> None:
    primary, _ = upstreams
    primary.fail_always(fault)
    response = chat(gateway, model="route:alone")
    assert response.status_code == 502
    assert response.json()["error"]["code"] == code
    client = gateway.client()
    with pytest.raises(openai.InternalServerError):
        next(requests_sent)
        client.chat.completions.create(model="route:alone", messages=HELLO)  # type: ignore[arg-type]


def test_a_stream_cut_after_its_first_chunk_ends_with_an_error_event(
    gateway: Served, upstreams: tuple[FakeOpenAI, FakeOpenAI]
) -> None:
    primary, backup = upstreams
    primary.fail_always(Fault(cut_after=1, stream=True))
    body = {"model": "route:support", "messages": HELLO, "stream": True}
    next(requests_sent)
    with httpx.stream(
        "POST", f"{gateway.base_url}/chat/completions", json=body, headers=gateway.auth, timeout=30
    ) as response:
        events = [line for line in response.iter_lines() if line.startswith("data: ")]
        request_id = response.headers["x-fleetdeck-request-id"]
    assert response.status_code == 200
    assert "data: [DONE]" not in events
    assert '"error"' in events[-1]
    assert backup.request_count == 0, "no fallback after the first byte"
    trace = trace_of(gateway, request_id)
    assert trace["status"] == "partial" and trace["error_type"] == "connection"


def streamed(served: Served, model: str) -> list[str]:
    """The `data:` lines of one streamed chat call."""
    next(requests_sent)
    body = {"model": model, "messages": HELLO, "stream": True}
    with httpx.stream(
        "POST", f"{served.base_url}/chat/completions", json=body, headers=served.auth, timeout=30
    ) as response:
        return [line for line in response.iter_lines() if line.startswith("data: ")]


def test_a_stream_outliving_the_deadline_ends_with_an_error_that_says_so(
    gateway: Served, upstreams: tuple[FakeOpenAI, FakeOpenAI]
) -> None:
    primary, _ = upstreams
    primary.fail_always(Fault(chunk_delay_s=1.2, stream=True))  # within idle_s 2, past total_s 3
    events = streamed(gateway, "route:alone")
    assert "data: [DONE]" not in events
    assert "the request's deadline passed mid-stream" in events[-1]


def test_a_stream_going_quiet_past_its_idle_timeout_ends_with_an_error_that_says_so(
    gateway: Served, upstreams: tuple[FakeOpenAI, FakeOpenAI]
) -> None:
    primary, _ = upstreams
    primary.fail_always(Fault(stall_at=2, stall_s=2.5, stream=True))  # past idle_s 1, well within total_s
    events = streamed(gateway, "route:patient")
    assert "data: [DONE]" not in events
    assert "the stream went quiet for 1.0s" in events[-1]


def test_a_client_leaving_mid_stream_is_traced_as_gone(
    gateway: Served, upstreams: tuple[FakeOpenAI, FakeOpenAI]
) -> None:
    primary, _ = upstreams
    primary.fail_always(Fault(chunk_delay_s=0.5, stream=True))  # slow enough to leave halfway
    body = {"model": "route:patient", "messages": HELLO, "stream": True}
    next(requests_sent)
    with httpx.stream(
        "POST", f"{gateway.base_url}/chat/completions", json=body, headers=gateway.auth, timeout=30
    ) as response:
        request_id = response.headers["x-fleetdeck-request-id"]
        first = next(line for line in response.iter_lines() if line.startswith("data: "))
    assert '"choices"' in first
    trace = trace_of(gateway, request_id)
    assert (trace["status"], trace["error_type"], trace["http_status"]) == (
        "partial",
        "client_disconnected",
        499,
    )


def test_a_stream_failing_before_its_first_chunk_falls_back(
    gateway: Served, upstreams: tuple[FakeOpenAI, FakeOpenAI]
) -> None:
    primary, _ = upstreams
    primary.fail_always(Fault(status=500, stream=True))
    client = gateway.client()
    next(requests_sent)
    chunks = list(client.chat.completions.create(model="route:support", messages=HELLO, stream=True))  # type: ignore[arg-type]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "hello there"


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 MB tmpfs for a data dir (root only; the test skips elsewhere)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)], capture_output=True, check=False
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(path: Path) -> None:
    chunk = b"\0" * (1 << 20)
    with path.open("wb", buffering=0) as f:
        while len(chunk) >= 512:
            try:
                f.write(chunk)
            except OSError:
                chunk = chunk[: len(chunk) // 2]


def test_a_full_disk_fails_calls_closed_in_their_protocol_and_loses_nothing_acknowledged(
    full_disk: Path, upstreams: tuple[FakeOpenAI, FakeOpenAI]
) -> None:
    primary, _ = upstreams
    primary.reset()  # the module's earlier tests leave their faults on it
    policy = f"providers:\n  lab: {{kind: openai_compat, base_url: '{primary.base_url}'}}\n"
    policy += "routes:\n  - {intent: alone, primary: lab/mock-gpt}\n"
    data_dir = full_disk / "data"
    acked = []
    with fleetdeck_serve(data_dir, policy) as served:
        body = {"model": "route:alone", "messages": HELLO}
        ok = httpx.post(f"{served.base_url}/chat/completions", json=body, headers=served.auth, timeout=30)
        assert ok.status_code == 200
        acked.append(ok.headers["x-fleetdeck-request-id"])
        _fill(full_disk / "filler")
        # The first call after the disk filled either could not be spooled (503) or was: then
        # the next one is refused at once. Either way nothing is answered that is not kept.
        refused = None
        for _ in range(20):
            answer = httpx.post(
                f"{served.base_url}/chat/completions", json=body, headers=served.auth, timeout=30
            )
            if answer.status_code == 503:
                refused = answer
                break
            assert answer.status_code == 200
            acked.append(answer.headers["x-fleetdeck-request-id"])
        assert refused is not None, "a full disk was never noticed"
        assert refused.json()["error"]["code"] == "recorder_unavailable"
        assert "No space left on device" in refused.json()["error"]["message"]
        messages = httpx.post(
            f"{served.base_url}/messages",
            json={"model": "route:alone", "max_tokens": 16, "messages": HELLO},
            headers=served.auth,
            timeout=30,
        )
        assert messages.status_code == 503 and messages.json()["type"] == "error"
        (full_disk / "filler").unlink()
        # The writer's probe finds room again: calls are served, and kept.
        deadline = time.monotonic() + 30
        while True:
            answer = httpx.post(
                f"{served.base_url}/chat/completions", json=body, headers=served.auth, timeout=30
            )
            if answer.status_code == 200:
                acked.append(answer.headers["x-fleetdeck-request-id"])
                break
            assert answer.status_code == 503 and time.monotonic() < deadline
            time.sleep(0.05)  # paces the calls; the condition is what the loop waits for
        stream = {**body, "stream": True}
        with httpx.stream(
            "POST", f"{served.base_url}/chat/completions", json=stream, headers=served.auth, timeout=30
        ) as response:
            events = [line for line in response.iter_lines() if line.startswith("data: ")]
            acked.append(response.headers["x-fleetdeck-request-id"])
        assert events[-1] == "data: [DONE]"
    stored = {t["request_id"] for t in stored_traces(data_dir, "request_id")}
    assert set(acked) <= stored, "every acknowledged call is in the store"


def _events_of(answer: httpx.Response) -> list[dict[str, Any]]:
    return [orjson.loads(line[6:]) for line in answer.text.splitlines() if line.startswith("data: ")]


def _spooled_bytes(spool: Path, request_id: str) -> tuple[int, int, int]:
    """The newest segment's size, and how many bytes of it the call's trace (with its payloads)
    and its stored response took."""
    segment = max(path for path in spool.glob("*.jsonl"))
    lines = segment.read_bytes().split(b"\n")
    mine = [line for line in lines if request_id.encode() in line[:120]]
    stored = sum(len(line) + 1 for line in mine if line.startswith(b'["stored_responses"'))
    return segment.stat().st_size, sum(len(line) + 1 for line in mine) - stored, stored


def test_a_responses_stream_whose_stored_response_cannot_be_kept_ends_failed(
    tmp_path: Path, upstreams: tuple[FakeOpenAI, FakeOpenAI]
) -> None:
    """`make soak` found it on a clean clone: the spool filled between a stored Responses stream's
    trace and its stored response, and the gateway dropped the connection. The stream must end in
    its protocol's failure, never `response.completed` for a response that was not kept.

    A file-size limit on the serving process (prlimit; every write past it fails, as on a full
    disk) lets the trace through and stops the stored response; the writer's hourly turn keeps
    the segment from rotating in between."""
    primary, _ = upstreams
    primary.reset()
    policy = f"providers:\n  lab: {{kind: openai_compat, base_url: '{primary.base_url}'}}\n"
    policy += "routes:\n  - {intent: alone, primary: lab/mock-gpt, max_retries: 0}\n"
    body = {"model": "route:alone", "input": "hello there", "stream": True, "store": True}
    data_dir = tmp_path / "data"
    hourly = {"FLEETDECK_RECORDER_FLUSH_INTERVAL_S": "3600"}
    with fleetdeck_serve(data_dir, policy, hourly) as served:
        assert served.process is not None
        post = functools.partial(httpx.post, f"{served.base_url}/responses", headers=served.auth, timeout=30)
        first = post(json=body)
        kept = _events_of(first)[-1]["response"]["id"]
        size, trace_bytes, stored_bytes = _spooled_bytes(
            data_dir / "spool", first.headers["x-fleetdeck-request-id"]
        )
        assert trace_bytes and stored_bytes, "the call's trace and stored response are on the spool"
        limits = resource.prlimit(served.process.pid, resource.RLIMIT_FSIZE)
        room = size + trace_bytes + stored_bytes // 2
        resource.prlimit(served.process.pid, resource.RLIMIT_FSIZE, (room, limits[1]))
        try:
            events = _events_of(post(json=body))
        finally:
            resource.prlimit(served.process.pid, resource.RLIMIT_FSIZE, limits)
        kinds = [event["type"] for event in events]
        assert "response.completed" not in kinds
        assert kinds[-2:] == ["response.failed", "error"], kinds
        assert events[-2]["response"]["error"]["code"] == "recorder_unavailable"
        assert "too large" in events[-2]["response"]["error"]["message"]  # EFBIG's strerror
        refused = post(json=body)  # until the writer writes the spool again
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "recorder_unavailable"
        # A read flushes: the writer's turn finds room again, and the first response is there.
        found = httpx.get(f"{served.base_url}/responses/{kept}", headers=served.auth, timeout=30)
        assert found.status_code == 200 and found.json()["status"] == "completed"
        unkept = events[-2]["response"]["id"]
        missing = httpx.get(f"{served.base_url}/responses/{unkept}", headers=served.auth, timeout=30)
        assert missing.status_code == 404
        again = post(json=body)
        assert again.status_code == 200 and _events_of(again)[-1]["type"] == "response.completed"
    stored = {t["request_id"] for t in stored_traces(data_dir, "request_id")}
    assert {first.headers["x-fleetdeck-request-id"], again.headers["x-fleetdeck-request-id"]} <= stored
