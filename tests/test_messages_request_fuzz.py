"""Random near-valid Messages API bodies through the request translation: each is either a
canonical request or a 400 naming what is wrong, never another exception (a 500)."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from console.gateway.ingress import messages_request
from console.gateway.openai_api import ApiError

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10,
)
block_types = st.sampled_from(["text", "image", "tool_use", "tool_result", "thinking", "document", "x"])
blocks = st.lists(
    st.fixed_dictionaries(
        {"type": block_types | json_values},
        optional={
            "text": json_values,
            "id": st.sampled_from(["toolu_1", "toolu_2"]) | json_values,
            "tool_use_id": st.sampled_from(["toolu_1", "toolu_2"]) | json_values,
            "name": json_values,
            "input": json_values,
            "content": json_values | st.text(max_size=10),
            "source": json_values,
        },
    ),
    max_size=3,
)
messages = st.lists(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "assistant", "system", 3])},
        optional={"content": blocks | st.text(max_size=10) | json_values},
    ),
    max_size=4,
)
bodies = st.fixed_dictionaries(
    {"messages": messages | json_values},
    optional={
        "model": st.sampled_from(["route:general", ""]) | json_values,
        "max_tokens": st.integers(-2, 100) | json_values,
        "system": st.text(max_size=10) | blocks | json_values,
        "tools": st.lists(
            st.fixed_dictionaries({}, optional={"name": json_values, "input_schema": json_values}), max_size=2
        )
        | json_values,
        "tool_choice": st.fixed_dictionaries(
            {"type": st.sampled_from(["auto", "any", "tool", "none", "x"])}, optional={"name": json_values}
        )
        | json_values,
        "stop_sequences": json_values,
        "temperature": json_values,
        "top_k": json_values,
        "metadata": json_values,
        "stream": json_values,
    },
)


@settings(max_examples=400, deadline=None)
@given(body=bodies, count=st.booleans())
def test_any_body_is_translated_or_refused_with_a_400(body: dict[str, object], count: bool) -> None:
    try:
        request = messages_request.parse(json.dumps(body).encode(), "chat", count=count)
    except ApiError as error:
        assert error.status == 400 and error.message
        return
    assert request.body["messages"] and request.native is not None
