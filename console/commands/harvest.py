"""`fleetdeck eval harvest`: judged production calls become golden cases.

Each case replays the call's stored request (its messages as they were sent, the rendered
prompt included, and the request fields that shape the answer) and asserts what the
verdict implies: the schema the request asked for, and, for a call judged incorrect or
partial, that the answer differs from the one the judge rejected (for one judged correct,
that it stays close to the accepted answer). The verdict, the judge's rationale and the
prompt version are kept in the case's `metadata`, so a curator can add expected values.
Calls without a stored request (no payload) are skipped and counted.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from console.gateway.oversight import VERDICTS
from console.guards import schema as schema_guard
from console.quality import golden

REPLAYED_FIELDS = ("response_format", "temperature", "max_tokens", "max_completion_tokens", "seed", "stop")
HARVEST_THRESHOLD = 0.8


class HarvestError(ValueError):
    pass


def query_request(workflow: str, verdict: str, limit: int) -> dict[str, Any]:
    if verdict not in VERDICTS:
        raise HarvestError(f"--verdict {verdict!r}: use one of {', '.join(VERDICTS)}")
    return {"name": "harvest_cases", "params": {"workflow": workflow, "verdict": verdict, "max_cases": limit}}


def golden_set(rows: list[dict[str, Any]], workflow: str, verdict: str) -> dict[str, Any]:
    """The golden-set document of the harvested rows (those with a stored request)."""
    cases = [case for row in rows if (case := golden_case(row)) is not None]
    if not cases:
        raise HarvestError(
            f"no {verdict} verdict on a {workflow!r} call with a stored request "
            f"({len(rows)} judged calls found, none with a payload)"
        )
    routes = Counter(_target(row) for row in rows if row.get("request"))
    document = {
        "name": f"harvest-{workflow}-{verdict}",
        "description": f"{len(cases)} {workflow} calls judged {verdict} in production",
        "route": routes.most_common(1)[0][0],
        "threshold": HARVEST_THRESHOLD,
        "tests": cases,
    }
    golden.GoldenSet.model_validate(document)  # what is written must run
    return document


def write_golden_set(rows: list[dict[str, Any]], workflow: str, verdict: str, out: Path) -> int:
    document = golden_set(rows, workflow, verdict)
    golden.dump(document, out)
    return len(document["tests"])


def golden_case(row: dict[str, Any]) -> dict[str, Any] | None:
    if not row.get("request"):
        return None
    request = orjson.loads(row["request"])
    messages = request.get("messages")
    if not isinstance(messages, list) or not messages:
        return None
    options = {name: request[name] for name in REPLAYED_FIELDS if name in request}
    rationale = row.get("rationale") or ""
    case: dict[str, Any] = {
        "description": f"{row['request_id']} judged {row['verdict']}: {rationale}"[:200],
        "messages": messages,
    }
    if options:
        case["options"] = options
    case["assert"] = _asserts(request, _answer(row.get("response")), row["verdict"])
    case["metadata"] = {
        "request_id": row["request_id"],
        "ts": str(row["ts_start"]),
        "verdict": row["verdict"],
        "evaluator": row.get("evaluator"),
        "rubric": row.get("rubric"),
        "component": row.get("component"),
        "rationale": rationale,
        "prompt": f"{row['prompt_name']}@{row['prompt_version']}" if row.get("prompt_name") else None,
        "answer": _answer(row.get("response")),
    }
    return case


def _asserts(request: dict[str, Any], answer: str | None, verdict: str) -> list[dict[str, Any]]:
    asserts: list[dict[str, Any]] = []
    try:
        schema = schema_guard.requested_schema(request)
    except schema_guard.InvalidSchema:
        schema = None
    if schema is not None:
        asserts.append({"type": "json-schema", "value": schema})
    if answer is None:
        return asserts
    if verdict == "correct":
        asserts.append({"type": "similar", "value": answer, "threshold": 0.8})
    else:
        asserts.append({"type": "not-equals", "value": _document(answer)})
    return asserts


def _answer(response: str | None) -> str | None:
    if not response:
        return None
    body = orjson.loads(response)
    try:
        content = body["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return None
    return content if isinstance(content, str) else None


def _document(answer: str) -> Any:
    """The rejected answer as JSON when it is JSON (so key order and spacing do not matter)."""
    try:
        parsed = orjson.loads(answer)
    except orjson.JSONDecodeError:
        return answer
    return parsed if isinstance(parsed, dict | list) else answer


def _target(row: dict[str, Any]) -> str:
    return f"route:{row['route']}" if row.get("route") else str(row.get("request_model"))
