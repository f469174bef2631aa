"""Screening both ways: PII in a tool call's arguments, prompt injection in its result.

Arguments are any JSON; every string in them (keys stay as they are) is redacted with
console.guards. A result's text (its text content blocks and the strings of its
structured content) is scored as retrieved content: text addressed to the model there is
itself suspicious (indirect injection).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import mcp_types as types

from console import guards
from console.guards import InjectionResult


def redact(value: Any, counts: dict[str, int] | None = None) -> tuple[Any, dict[str, int]]:
    """A redacted copy of a JSON value, and the PII found by kind."""
    counts = {} if counts is None else counts
    if isinstance(value, str):
        redacted, found = guards.redact(value)
        for kind, n in found.items():
            counts[kind] = counts.get(kind, 0) + n
        return redacted, counts
    if isinstance(value, dict):
        return {key: redact(item, counts)[0] for key, item in value.items()}, counts
    if isinstance(value, list):
        return [redact(item, counts)[0] for item in value], counts
    return value, counts


def result_texts(result: types.CallToolResult) -> Iterator[str]:
    for block in result.content:
        if isinstance(block, types.TextContent):
            yield block.text
        elif isinstance(block, types.EmbeddedResource) and isinstance(
            block.resource, types.TextResourceContents
        ):
            yield block.resource.text
    yield from _strings(result.structured_content)


def injection(result: types.CallToolResult) -> InjectionResult:
    """The highest injection score over the result's texts."""
    best = InjectionResult(0.0, ())
    for text in result_texts(result):
        scored = guards.injection_score(text, source="retrieved")
        if scored.score > best.score:
            best = scored
    return best


def result_size(result: types.CallToolResult) -> int:
    return len(result.model_dump_json(by_alias=True, exclude_none=True))


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
