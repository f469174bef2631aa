"""The responses the Responses API stores (`stored_responses`), for `previous_response_id`
and `GET|DELETE /v1/responses/{id}`.

Writes ride the recorder (crash-safe spool, batched inserts) like payloads, so keeping
one costs the request path one spool write. Reads run on a worker thread: one that finds
nothing while responses are still on the spool flushes the recorder and looks again, so
a client reads its own writes (create, then retrieve or continue at once). Every read and
delete is scoped to the virtual key that made the response.
"""

from __future__ import annotations

import threading
from typing import Any

import orjson

from console.store import queries
from console.store.db import Database
from console.store.recorder import Recorder
from console.store.trace import StoredResponse

DELETE = "DELETE FROM stored_responses WHERE response_id = ? AND key_id IS NOT DISTINCT FROM ?"


class StoredResponses:
    def __init__(self, db: Database, recorder: Recorder) -> None:
        self._db, self._recorder = db, recorder
        self._lock = threading.Lock()
        self._kept = 0  # responses kept so far
        self._stored_through = 0  # of them, the first this many are surely in DuckDB

    def keep(self, stored: StoredResponse) -> None:
        """On the spool; stored in DuckDB with the recorder's next batch."""
        self._recorder.record_response(stored)
        with self._lock:  # counted once on the spool: a flush from then on stores it
            self._kept += 1

    def find(self, response_id: str, key_id: str | None) -> StoredResponse | None:
        """The response if `key_id` made it (blocking: call from a worker thread)."""
        found = self._select(response_id, key_id)
        if found is None and self._flush():
            found = self._select(response_id, key_id)
        return found

    def delete(self, response_id: str, key_id: str | None) -> bool:
        """Delete the response if `key_id` made it; whether there was one (blocking)."""
        self._flush()  # a response still on the spool must not come back after its delete
        cur = self._db.cursor()
        deleted = cur.execute(DELETE + " RETURNING response_id", [response_id, key_id]).fetchall()
        return bool(deleted)

    def _flush(self) -> bool:
        """Store what is on the spool if a kept response may still be there; whether it was."""
        with self._lock:
            kept = self._kept
            if kept <= self._stored_through:
                return False
        self._recorder.flush()  # everything recorded before this call is in DuckDB after it
        with self._lock:
            self._stored_through = max(self._stored_through, kept)
        return True

    def _select(self, response_id: str, key_id: str | None) -> StoredResponse | None:
        rows = queries.run(
            self._db.cursor(), "stored_response", {"response_id": response_id, "key_id": key_id}
        ).to_pylist()
        return _stored(rows[0]) if rows else None


def _stored(row: dict[str, Any]) -> StoredResponse:
    return StoredResponse(
        response_id=row["response_id"],
        request_id=row["request_id"],
        key_id=row["key_id"],
        created_at=row["created_at"],
        previous_response_id=row["previous_response_id"],
        input_items=orjson.loads(row["input_items"]),
        response=orjson.loads(row["response"]),
    )
