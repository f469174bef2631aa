"""The gateway on its default policy, driven by the official openai SDK: the local model, for real."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from gateway_process import Served, stored_traces, trace_of

requests_sent = itertools.count()


@pytest.fixture(scope="module")
def data_dir(data_dir: Path) -> Iterator[Path]:
    """The shipped default policy's instance (`served`) keeps its store here."""
    yield data_dir
    sent = next(requests_sent)  # `served` has stopped: its store can be opened
    assert len(stored_traces(data_dir, "request_id")) == sent, "one trace per request"


def sent(n: int = 1) -> None:
    for _ in range(n):
        next(requests_sent)


def test_chat_completion_is_generated_by_the_local_model(served: Served) -> None:
    raw = served.client().chat.completions.with_raw_response.create(
        model="route:general", messages=[{"role": "user", "content": "Say hello."}], max_tokens=16
    )
    sent()
    completion = raw.parse()
    assert completion.choices[0].message.content
    assert completion.usage is not None
    assert completion.usage.prompt_tokens > 0 and completion.usage.completion_tokens > 0
    assert raw.headers["x-fleetdeck-model"] == "local/smollm2-135m"
    assert raw.headers["x-fleetdeck-route"] == "general"
    assert raw.headers["x-fleetdeck-reason"] == "primary"

    trace = trace_of(served, raw.headers["x-fleetdeck-request-id"])
    assert trace["provider"] == "local" and trace["status"] == "ok" and trace["http_status"] == 200
    assert trace["output_tokens"] == completion.usage.completion_tokens
    assert trace["price_source"] == "local-compute" and trace["cost_usd"] > 0


def test_streamed_chat_relays_chunks_usage_and_done(served: Served) -> None:
    stream = served.client().chat.completions.create(
        model="local/smollm2-135m",
        messages=[{"role": "user", "content": "Count to five."}],
        max_tokens=16,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    sent()
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_stream_without_include_usage_gets_no_usage_chunk_but_the_trace_has_it(served: Served) -> None:
    body = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8, "stream": True}
    with httpx.stream(
        "POST", f"{served.base_url}/chat/completions", json=body, headers=served.auth, timeout=60
    ) as response:
        events = [line for line in response.iter_lines() if line.startswith("data: ")]
        request_id = response.headers["x-fleetdeck-request-id"]
    sent()
    assert events[-1] == "data: [DONE]"
    assert all('"usage"' not in e or '"usage":null' in e for e in events[:-1])
    trace = trace_of(served, request_id)
    assert trace["stream"] is True and trace["status"] == "ok" and trace["output_tokens"] > 0
    assert trace["ttft_ms"] is not None


def test_completions_and_embeddings(served: Served) -> None:
    client = served.client()
    completion = client.completions.create(model="local/smollm2-135m", prompt="The sky is", max_tokens=8)
    embeddings = client.embeddings.create(
        model="local/smollm2-135m", input=["refund my order", "reset password"]
    )
    sent(2)
    assert completion.choices[0].text
    assert len(embeddings.data) == 2
    assert len(embeddings.data[0].embedding) == len(embeddings.data[1].embedding) > 0


def test_model_list_names_routes_and_models(served: Served) -> None:
    listed = served.client().models.with_raw_response.list()
    sent()
    assert {"route:general", "local/smollm2-135m"} <= {model.id for model in listed.parse()}
    trace = trace_of(served, listed.headers["x-fleetdeck-request-id"])
    assert trace["operation"] == "models" and trace["status"] == "ok" and trace["provider"] is None


def test_unknown_model_is_not_found(served: Served) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        served.client().chat.completions.create(
            model="local/no-such-model", messages=[{"role": "user", "content": "hi"}]
        )
    sent()
    assert "no-such-model" in str(raised.value)
    with pytest.raises(openai.NotFoundError):
        served.client().chat.completions.create(
            model="route:nope", messages=[{"role": "user", "content": "x"}]
        )
    sent()


def test_malformed_bodies_are_bad_requests(served: Served) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        served.client().chat.completions.create(model="route:general", messages="not a list")  # type: ignore[arg-type]
    sent()
    assert raised.value.code is None or "messages" in str(raised.value)
    for raw in (b"{not json", b"\xff\xfe\x00", b"[1, 2]", b""):
        response = httpx.post(
            f"{served.base_url}/chat/completions", content=raw, headers=served.auth, timeout=30
        )
        sent()
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "invalid_json"


def test_outcomes_are_recorded_and_checked(served: Served) -> None:
    ok = httpx.post(
        f"{served.base_url}/outcomes",
        json={"task_id": "t-42", "workflow_id": "support_triage", "status": "resolved", "value": 12},
        headers=served.auth,
        timeout=10,
    )
    bad = httpx.post(
        f"{served.base_url}/outcomes",
        json={"task_id": "t-43", "status": "great"},
        headers=served.auth,
        timeout=10,
    )
    sent(2)
    assert ok.status_code == 200 and bad.status_code == 400
    assert bad.json()["error"]["param"] == "status"
    trace = trace_of(served, ok.headers["x-fleetdeck-request-id"])
    assert (trace["operation"], trace["task_id"], trace["workflow_id"]) == (
        "outcome",
        "t-42",
        "support_triage",
    )
    assert trace_of(served, bad.headers["x-fleetdeck-request-id"])["http_status"] == 400


def test_health_says_which_device_serves_and_where_the_layers_went(served: Served) -> None:
    import llama_cpp  # the build the instance runs: its own word on a GPU device

    served.client().completions.create(model="local/smollm2-135m", prompt="Hi", max_tokens=1)  # loaded
    sent()
    local = httpx.get(f"{served.url}/healthz", timeout=10).json()["providers"]["local"]
    assert (local["layers"], local["offload_source"]) == (31, "llama.cpp load log")  # SmolLM2: 30 + output
    if llama_cpp.llama_supports_gpu_offload():  # a GPU here: the default offloads every layer
        assert (local["device"], local["n_gpu_layers"], local["layers_offloaded"]) == ("gpu", -1, 31)
        assert local["gpu_devices"] and len(local["backends"]) > 1
    else:  # this box: a CPU build, no GPU device
        assert (local["device"], local["n_gpu_layers"], local["layers_offloaded"]) == ("cpu", 0, 0)
        assert (local["gpu_devices"], local["backends"]) == ([], ["CPU"])


def test_unknown_path_gets_an_error_envelope(served: Served, tmp_path: Path) -> None:
    response = httpx.get(f"{served.base_url}/nothing-here", timeout=10)
    sent()
    assert response.status_code == 404 and "error" in response.json()
    assert trace_of(served, response.headers["x-fleetdeck-request-id"])["error_type"] == "not_found"
