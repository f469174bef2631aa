"""Stored Responses API responses in the real DuckDB store: kept through the recorder, read
back at once, scoped to their key, deleted, and purged with the payloads."""

from __future__ import annotations

from datetime import timedelta

from console.clock import utc_now
from console.engine import Engine
from console.store.responses import StoredResponses
from console.store.trace import StoredResponse


def stored(response_id: str, key_id: str | None, days_old: int = 0) -> StoredResponse:
    return StoredResponse(
        response_id=response_id,
        request_id=response_id.removeprefix("resp_"),
        key_id=key_id,
        created_at=utc_now() - timedelta(days=days_old),
        input_items=[{"id": "msg_1", "type": "message", "role": "user", "content": []}],
        response={"id": response_id, "object": "response", "output": []},
    )


def test_a_kept_response_is_found_at_once_by_its_key_only(engine: Engine) -> None:
    responses = StoredResponses(engine.db, engine.recorder)
    responses.keep(stored("resp_a", "key-1"))
    found = responses.find("resp_a", "key-1")  # still on the spool: the miss flushes and looks again
    assert found is not None and found.input_items[0]["id"] == "msg_1"
    assert found.response == {"id": "resp_a", "object": "response", "output": []}
    assert responses.find("resp_a", "key-2") is None
    assert responses.find("resp_a", None) is None
    assert responses.find("resp_b", "key-1") is None


def test_a_gateway_without_keys_stores_them_for_no_key(engine: Engine) -> None:
    responses = StoredResponses(engine.db, engine.recorder)
    responses.keep(stored("resp_open", None))
    assert responses.find("resp_open", None) is not None
    assert responses.find("resp_open", "key-1") is None


def test_delete_takes_a_response_still_on_the_spool_and_only_for_its_key(engine: Engine) -> None:
    responses = StoredResponses(engine.db, engine.recorder)
    responses.keep(stored("resp_d", "key-1"))
    assert responses.delete("resp_d", "key-2") is False
    assert responses.delete("resp_d", "key-1") is True
    engine.recorder.flush()
    assert responses.find("resp_d", "key-1") is None
    assert responses.delete("resp_d", "key-1") is False


def test_retention_purges_them_with_the_payloads(engine: Engine) -> None:
    responses = StoredResponses(engine.db, engine.recorder)
    days = engine.settings.payload_retention_days
    responses.keep(stored("resp_old", "key-1", days_old=days + 1))
    responses.keep(stored("resp_new", "key-1", days_old=1))
    engine.recorder.flush()
    dry = engine.retention.apply(dry_run=True)
    assert dry.rows["stored_responses"] == 1
    run = engine.retention.apply()
    assert run.rows["stored_responses"] == 1
    assert responses.find("resp_old", "key-1") is None
    assert responses.find("resp_new", "key-1") is not None
