"""Output schema validity: does a model's answer parse and match the schema it was asked for?

The schema comes from the request (`response_format` `json_schema`, or `json_object` for
"any JSON object") or from the route (`output_schema` in the policy). The answer must be the
JSON document itself: an answer wrapped in prose or a Markdown fence is invalid, because the
caller's own parser would reject it too.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jsonschema
import orjson

ANY_OBJECT: dict[str, Any] = {"type": "object"}


class InvalidSchema(ValueError):
    """A schema that is not itself a valid JSON Schema."""


@dataclass(frozen=True, slots=True)
class SchemaVerdict:
    valid: bool
    error: str | None = None  # the first problem, in words, when invalid

    def as_json(self) -> dict[str, Any]:
        return {"valid": self.valid, "error": self.error}


def requested_schema(body: Mapping[str, Any]) -> dict[str, Any] | None:
    """The schema a request's `response_format` asks for; None when it asks for none.

    Raises InvalidSchema naming the problem when the request carries a malformed one.
    """
    response_format = body.get("response_format")
    if not isinstance(response_format, Mapping):
        return None
    kind = response_format.get("type")
    if kind == "json_object":
        return ANY_OBJECT
    if kind != "json_schema":
        return None
    spec = response_format.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, Mapping) else None
    if not isinstance(schema, dict):
        raise InvalidSchema("response_format.json_schema.schema must be an object")
    check_schema(schema)
    return schema


def check_schema(schema: dict[str, Any]) -> None:
    """Raise InvalidSchema when `schema` is not a valid JSON Schema (of its declared draft)."""
    # Apps (and the judge) send the same schema with every call, and checking one against its
    # meta-schema costs milliseconds of the gateway's loop: each valid schema is checked once.
    try:
        canonical = orjson.dumps(schema, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # not JSON (a YAML policy's odd key): check it as it is
        _check_against_meta_schema(schema)
    else:
        _check_canonical(canonical)


@functools.lru_cache(maxsize=512)
def _check_canonical(canonical: bytes) -> None:
    _check_against_meta_schema(orjson.loads(canonical))


def _check_against_meta_schema(schema: dict[str, Any]) -> None:
    validator = jsonschema.validators.validator_for(schema)
    try:
        validator.check_schema(schema)
    except jsonschema.SchemaError as error:
        raise InvalidSchema(f"not a valid JSON Schema: {error.message}") from None


def check_output(text: str | None, schema: dict[str, Any]) -> SchemaVerdict:
    """The verdict on one answer's text against `schema`."""
    if not text or not text.strip():
        return SchemaVerdict(False, "the answer is empty")
    try:
        document = orjson.loads(text)
    except orjson.JSONDecodeError as error:
        return SchemaVerdict(False, f"not JSON: {error}")
    return check_document(document, schema)


def check_document(document: Any, schema: dict[str, Any]) -> SchemaVerdict:
    """The verdict on a parsed JSON document against `schema`, naming where it fails."""
    validator = jsonschema.validators.validator_for(schema)(schema)
    problem = jsonschema.exceptions.best_match(validator.iter_errors(document))
    if problem is None:
        return SchemaVerdict(True)
    where = "/".join(str(part) for part in problem.absolute_path) or "the document"
    return SchemaVerdict(False, f"{where}: {problem.message}"[:300])


def check_answers(texts: list[str | None], schema: dict[str, Any]) -> SchemaVerdict:
    """The verdict on every choice of a response: valid only when all of them are."""
    if not texts:
        return SchemaVerdict(False, "the response has no choices")
    for index, text in enumerate(texts):
        verdict = check_output(text, schema)
        if not verdict.valid:
            prefix = f"choice {index}: " if len(texts) > 1 else ""
            return SchemaVerdict(False, f"{prefix}{verdict.error}")
    return SchemaVerdict(True)
