"""The OpenAPI document: generated from the wire models, kept in docs/openapi.json, covering every
route the gateway mounts; and the wire models as the handlers' checks (the 400s they answer)."""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis

from console.engine import Engine
from console.gateway.ingress import ADAPTERS
from console.gateway.openai_api import ApiError
from console.gateway.openapi import document, document_bytes
from console.gateway.wire.check import Checked
from console.gateway.wire.fleetdeck import ADMIN_REQUESTS
from console.gateway.wire.openai import ChatCompletionRequest, EmbeddingRequest
from console.settings import Settings

REPO = Path(__file__).resolve().parents[1]


def test_the_committed_document_is_the_generated_one() -> None:
    committed = (REPO / "docs" / "openapi.json").read_bytes()
    assert committed == document_bytes(), "regenerate: python -m console.gateway.openapi docs/openapi.json"


def test_the_document_is_valid_openapi_and_names_every_route() -> None:
    schema = schemathesis.openapi.from_dict(document())
    labels = {result.ok().label for result in schema.get_all_operations()}
    expected = {f"POST {ingress.path}" for ingress in ADAPTERS} | {
        "GET /v1/responses/{response_id}",
        "DELETE /v1/responses/{response_id}",
        "GET /v1/responses/{response_id}/input_items",
        "GET /v1/models",
        "POST /v1/outcomes",
        "POST /v1/handoffs",
        "GET /v1/handoffs/{handoff_id}",
        "GET /healthz",
        "GET /openapi.json",
        "POST /mcp",
        *(f"POST /_admin/{action}" for action in ADMIN_REQUESTS),
    }
    assert labels == expected


def test_every_admin_action_has_its_request_model(tmp_path: Path) -> None:
    with Engine(Settings(data_dir=tmp_path / "data")) as engine:
        assert set(engine._admin_handlers()) == set(ADMIN_REQUESTS)


CHAT = Checked(ChatCompletionRequest)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "messages"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "robot"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        ({"messages": [{"role": "user"}], "max_tokens": "10"}, "max_tokens"),
        ({"messages": [{"role": "user"}], "max_tokens": True}, "max_tokens"),
        ({"messages": [{"role": "user"}], "n": 0}, "n"),
        ({"messages": [{"role": "user"}], "temperature": "hot"}, "temperature"),
        ({"messages": [{"role": "user"}], "stream": "yes"}, "stream"),
        ({"messages": [{"role": "user"}], "metadata": []}, "metadata"),
    ],
)
def test_a_chat_body_the_model_refuses_is_a_400_naming_the_field(body: dict[str, object], param: str) -> None:
    with pytest.raises(ApiError) as refused:
        CHAT.check(body)
    assert (refused.value.status, refused.value.param) == (400, param)
    assert refused.value.message.startswith(f"{param}: ")


def test_a_chat_body_keeps_the_fields_the_gateway_does_not_know() -> None:
    body = {"messages": [{"role": "user", "content": "hi", "x": 1}], "seed": 3, "temperature": 1}
    CHAT.check(body)  # ints are numbers; unknown fields pass to the provider as sent
    assert body == {"messages": [{"role": "user", "content": "hi", "x": 1}], "seed": 3, "temperature": 1}


def test_embeddings_are_never_streamed() -> None:
    with pytest.raises(ApiError) as refused:
        Checked(EmbeddingRequest).check({"input": "x", "stream": True})
    assert refused.value.param == "stream"
