"""Provider secrets from keyring and from the environment never leave the process's memory.

A canary secret is set through a real keyring backend (a file-backed one, as this box
has no Secret Service) with `fleetdeck keys set-secret`, another through
`FLEETDECK_SECRET_<NAME>`. Fake upstreams accept only those keys, and echo them back in
their error messages, as real providers do with a bad key. Afterwards neither canary
is in the DuckDB file, the spool, the instance's output or any response.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import duckdb
import httpx
import pytest
from fakes.openai_upstream import FakeOpenAI, Fault
from gateway_process import REPO, Served, fleetdeck_serve, stored_traces

KEYRING_CANARY = "sk-kr-CANARY-7f3a9c1e5b2d4f60"
ENV_CANARY = "sk-env-CANARY-0d8e2b6a4c9f1e37"
TESTS = Path(__file__).resolve().parent

POLICY = """
providers:
  viakeyring:
    {{kind: openai_compat, base_url: "{kr}", secret: kr_canary, prices: {{m: {{input: 1, output: 1}}}}}}
  viaenv:
    {{kind: openai_compat, base_url: "{env}", secret: env_canary, prices: {{m: {{input: 1, output: 1}}}}}}
routes:
  - {{intent: kr, primary: viakeyring/m, max_retries: 1, timeouts: {{total_s: 20}}}}
  - {{intent: env, primary: viaenv/m, max_retries: 1, timeouts: {{total_s: 20}}}}
default_route: kr
"""


def keyring_env(tmp_path: Path) -> dict[str, str]:
    return {
        "PYTHON_KEYRING_BACKEND": "fakes.file_keyring.FileKeyring",
        "PYTHONPATH": str(TESTS),
        "FLEETDECK_TEST_KEYRING": str(tmp_path / "keyring.json"),
        "FLEETDECK_SECRET_ENV_CANARY": ENV_CANARY,
    }


@pytest.fixture
def upstreams() -> Iterator[tuple[FakeOpenAI, FakeOpenAI]]:
    with FakeOpenAI(api_key=KEYRING_CANARY) as kr, FakeOpenAI(api_key=ENV_CANARY) as env:
        yield kr, env


def test_canary_secrets_never_leak(tmp_path: Path, upstreams: tuple[FakeOpenAI, FakeOpenAI]) -> None:
    kr, env = upstreams
    extra_env = keyring_env(tmp_path)
    set_secret = subprocess.run(
        [sys.executable, "-m", "console", "keys", "set-secret", "kr_canary"],
        input=KEYRING_CANARY,
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**_environ(), **extra_env},
        timeout=60,
        check=False,
    )
    assert set_secret.returncode == 0, set_secret.stderr
    assert KEYRING_CANARY in (tmp_path / "keyring.json").read_text()  # it went through keyring

    data_dir = tmp_path / "data"
    seen: list[str] = [set_secret.stdout, set_secret.stderr]
    policy = POLICY.format(kr=kr.base_url, env=env.base_url)
    with fleetdeck_serve(data_dir, policy, env=extra_env) as served:
        seen += exercise(served, kr, env)
    seen += served.output

    assert kr.requests[0].headers["authorization"] == f"Bearer {KEYRING_CANARY}"
    assert env.requests[0].headers["authorization"] == f"Bearer {ENV_CANARY}"
    assert len(stored_traces(data_dir, "request_id")) > 0
    for canary in (KEYRING_CANARY, ENV_CANARY):
        assert not any(canary in text for text in seen), "a canary reached a response or the output"
        assert not any(canary.encode() in path.read_bytes() for path in files_under(data_dir)), "on disk"
        assert canary not in everything_stored(data_dir), "in the database"


def exercise(served: Served, kr: FakeOpenAI, env: FakeOpenAI) -> list[str]:
    """Calls that succeed, stream, and fail with the upstream echoing the key; every response text."""
    texts: list[str] = []
    echo = "Incorrect API key provided: {authorization}"

    def call(route: str, stream: bool = False) -> None:
        body = {
            "model": f"route:{route}",
            "messages": [{"role": "user", "content": "hi there"}],
            "stream": stream,
        }
        response = httpx.post(
            f"{served.base_url}/chat/completions", json=body, headers=served.auth, timeout=30
        )
        texts.extend([response.text, repr(response.headers)])

    for route, upstream in (("kr", kr), ("env", env)):
        call(route)
        call(route, stream=True)
        upstream.fail_next(1, Fault(status=400, message=echo))
        call(route)
        upstream.fail_next(2, Fault(status=500, message=echo))
        call(route)
        upstream.fail_next(1, Fault(status=401, message=echo))
        call(route)
        upstream.fail_next(1, Fault(error_after=1, stream=True, message=echo))
        call(route, stream=True)
    assert any("[redacted]" in text for text in texts), "the echoing upstream was exercised"
    return texts


def files_under(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if path.is_file()]


def everything_stored(data_dir: Path) -> str:
    """Every row of every table, as text (the file's bytes may be compressed)."""
    with duckdb.connect(str(data_dir / "fleetdeck.duckdb"), read_only=True) as con:
        tables = [row[0] for row in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()]
        return "\n".join(repr(con.execute(f"SELECT * FROM {table}").fetchall()) for table in tables)


def _environ() -> dict[str, str]:
    import os

    return dict(os.environ)
