"""The loopback admin API: how CLI commands reach the database an instance owns.

The running instance writes `admin.json` (its URL, pid and a random token) into the
data dir with mode 0600 and removes it when it stops. A CLI command finds the file,
checks that the pid is alive, and sends its query with the token; the instance runs
it on a DuckDB cursor in a worker thread and answers an Arrow IPC stream.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import httpx
import orjson
import pyarrow as pa

from console.errors import Invalid
from console.gateway.openai_api import ApiError
from console.store import adhoc, queries
from console.store.db import Database

ADMIN_FILE = "admin.json"


@dataclass(frozen=True)
class AdminEndpoint:
    url: str
    token: str
    pid: int

    @classmethod
    def publish(cls, data_dir: Path, url: str, token: str) -> AdminEndpoint:
        endpoint = cls(url, token, os.getpid())
        path = data_dir / ADMIN_FILE
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(orjson.dumps({"url": url, "token": endpoint.token, "pid": endpoint.pid}))
        return endpoint

    @classmethod
    def find(cls, data_dir: Path) -> AdminEndpoint | None:
        """The endpoint of a live instance owning this data dir, if there is one."""
        try:
            found = orjson.loads((data_dir / ADMIN_FILE).read_bytes())
            endpoint = cls(str(found["url"]), str(found["token"]), int(found["pid"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return endpoint if _alive(endpoint.pid) else None

    def withdraw(self, data_dir: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            (data_dir / ADMIN_FILE).unlink()

    def query(self, request: Mapping[str, Any], timeout_s: float = 300) -> pa.Table:
        """Run a query on the instance; raises ApiError with the instance's message."""
        with pa.ipc.open_stream(self._post("query", request, timeout_s)) as reader:
            return reader.read_all()

    def call(self, action: str, request: Mapping[str, Any], timeout_s: float = 30) -> dict[str, Any]:
        """A JSON admin action (`keys`, …) on the instance."""
        answer: dict[str, Any] = orjson.loads(self._post(action, request, timeout_s))
        return answer

    def _post(self, action: str, request: Mapping[str, Any], timeout_s: float) -> bytes:
        response = httpx.post(
            f"{self.url}/_admin/{action}",
            content=orjson.dumps(request),
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=timeout_s,
        )
        if response.status_code != 200:
            error = orjson.loads(response.content).get("error", {})
            raise ApiError(
                response.status_code, str(error.get("message", response.text)), code=error.get("code")
            )
        return response.content


def answer_query(db: Database, request: Mapping[str, Any]) -> bytes:
    """Run an admin query request (`{"sql": …}` or `{"name": …, "params": {…}}`); Arrow IPC bytes.

    A query refused or failing is an Invalid error (code query_refused or query_failed).
    """
    cur = db.cursor()
    try:
        if isinstance(request.get("name"), str):
            params = request.get("params") or {}
            table = queries.run(cur, request["name"], params if isinstance(params, dict) else {})
        elif isinstance(request.get("sql"), str):
            table = adhoc.run_read_only(cur, request["sql"])
        else:
            raise Invalid("send {'sql': …} or {'name': …, 'params': {…}}")
    except (queries.QueryError, adhoc.QueryRefused) as exc:
        raise Invalid(str(exc), code="query_refused") from None
    except duckdb.Error as exc:
        raise Invalid(f"query failed: {exc}", code="query_failed") from None
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
