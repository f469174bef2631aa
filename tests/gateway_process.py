"""A real `fleetdeck serve` child process on a free loopback port, for gateway tests."""

from __future__ import annotations

import os
import queue
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai

from console.engine import Engine
from console.settings import Settings

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Served:
    url: str
    data_dir: Path
    key: str  # a dev virtual key, created before the instance started
    output: list[str] = field(default_factory=list)  # stdout and stderr, complete once stopped
    process: subprocess.Popen[str] | None = None
    killed: bool = False  # SIGKILLed by the test: no clean exit to check

    def kill(self) -> None:
        """SIGKILL the instance (a crash: no shutdown runs) and wait for it to be gone."""
        assert self.process is not None
        self.killed = True
        self.process.kill()
        self.process.wait(timeout=30)

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def client(self, **options: object) -> openai.OpenAI:
        """The official SDK, without its own retries so every call is one request."""
        return openai.OpenAI(base_url=self.base_url, api_key=self.key, max_retries=0, **options)  # type: ignore[arg-type]


def run_cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`fleetdeck ARGS --data-dir DATA_DIR` in a child process, output captured."""
    return subprocess.run(
        [sys.executable, "-m", "console", *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )


def create_key(data_dir: Path, name: str, environment: str = "dev", **caps: Any) -> str:
    """A virtual key stored in the data dir while no instance owns it."""
    with Engine(Settings(data_dir=data_dir)) as engine:
        return engine.key_admin.create(name, environment, **caps)[1]


@contextmanager
def fleetdeck_serve(
    data_dir: Path, policy: str | None = None, env: dict[str, str] | None = None
) -> Iterator[Served]:
    """Start `fleetdeck serve --port 0`, wait for its address, SIGTERM it afterwards."""
    key = create_key(data_dir, f"tests-{secrets.token_hex(4)}")
    args = [sys.executable, "-m", "console", "serve", "--port", "0", "--data-dir", str(data_dir)]
    if policy is not None:
        policy_path = data_dir.parent / f"{data_dir.name}-routes.yaml"
        policy_path.write_text(policy)
        args += ["--policy", str(policy_path)]
    child = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=REPO,
    )
    lines: queue.Queue[str] = queue.Queue()
    errors: list[str] = []
    readers = [
        threading.Thread(target=lambda: [lines.put(line) for line in child.stdout or ()], daemon=True),
        threading.Thread(target=lambda: errors.extend(child.stderr or ()), daemon=True),
    ]
    for reader in readers:
        reader.start()
    served = None
    try:
        url = _wait_for_address(lines, child, errors)
        served = Served(url, data_dir, key, process=child)
        yield served
    finally:
        if child.returncode is None:
            child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
            raise
        for reader in readers:
            reader.join(timeout=10)
    if served is not None:
        served.output.extend([*list(lines.queue), *errors])
        if served.killed:
            return
    assert child.returncode == 0, "".join(errors) or child.returncode


def _wait_for_address(lines: queue.Queue[str], child: subprocess.Popen[str], errors: list[str]) -> str:
    try:
        line = lines.get(timeout=60)
    except queue.Empty:
        child.kill()
        raise RuntimeError("fleetdeck serve printed no address within 60 s") from None
    if " on http://" not in line:
        child.kill()
        child.wait(timeout=10)
        raise RuntimeError(f"fleetdeck serve did not start: {line}{''.join(errors)}")
    return line.split(" on ", 1)[1].split("/v1", 1)[0]


def stored_traces(data_dir: Path, columns: str = "*") -> list[dict[str, object]]:
    """The traces the stopped instance left, in the order they started."""
    with Engine(Settings(data_dir=data_dir)) as engine:
        cur = engine.db.cursor()
        result = cur.sql(f"SELECT {columns} FROM traces ORDER BY ts_start, request_id").to_arrow_table()
    return result.to_pylist()


def trace_of(served: Served, request_id: str, timeout_s: float = 10.0) -> dict[str, object]:
    """One trace, read through the running instance's admin API once the recorder has it."""
    sql = f"SELECT * FROM traces WHERE request_id = '{request_id}'"
    return rows_once_there(served, sql, f"no trace for {request_id}", timeout_s)[0]


def cache_entry(served: Served, request_id: str, timeout_s: float = 10.0) -> dict[str, object]:
    """The response cache's entry for a kept answer, once the cache has indexed it.

    The cache's writer thread indexes an entry for semantic lookups, then writes its row
    to `cache_entries`: the row is the event that says later lookups can find the entry.
    """
    sql = f"SELECT *, epoch(expires_at) AS expires_epoch FROM cache_entries WHERE entry_id = '{request_id}'"
    return rows_once_there(served, sql, f"the cache kept no entry for {request_id}", timeout_s)[0]


def rows_once_there(
    served: Served, sql: str, missing: str, timeout_s: float = 10.0
) -> list[dict[str, object]]:
    """The rows of `sql`, through the running instance's admin API, polled until there are some."""
    from console.gateway.admin import AdminEndpoint

    endpoint = AdminEndpoint.find(served.data_dir)
    assert endpoint is not None, "the instance published no admin endpoint"
    deadline = time.monotonic() + timeout_s
    while True:
        rows: list[dict[str, object]] = endpoint.query({"sql": sql}).to_pylist()
        if rows or time.monotonic() > deadline:
            assert rows, missing
            return rows
        time.sleep(0.05)


def wait_for_held(served: Served, timeout_s: float = 30.0) -> str:
    """The approval id of the first tool call held for a human, as `approvals list` shows it."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        listed = run_cli(served.data_dir, "approvals", "list").stdout.split()
        if listed and listed[0].startswith("apr_"):
            return listed[0]
        time.sleep(0.1)  # polls the instance; each poll is a CLI child process
    raise AssertionError("no tool call was held")
