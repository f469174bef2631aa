"""Fleetdeck's own secrets stay out of the data dir when there is no keyring.

The tests run with keyring's `fail` backend (tests/conftest.py), as on a headless box, and
with a config dir of the session's own (`FLEETDECK_CONFIG_DIR`). After a realistic run
(serve, calls, keys made by the CLI, an eval run, the console's dev key, audit verify and
export) the bytes of every file under the data dir are searched for the audit signing key,
the pepper and every virtual key made: none is there. A data dir laid out by an earlier
version (`local-secrets.json` in it) has its secrets moved to the config dir on first run:
its keys still authenticate and its signed audit checkpoints still verify.
"""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import openai
import orjson
import pytest
from fakes.openai_upstream import FakeOpenAI
from gateway_process import Served, fleetdeck_serve, run_cli

from console.engine import Engine
from console.gateway.key_admin import CONSOLE_KEY_SECRET
from console.gateway.keys import key_hash
from console.secrets import (
    AUDIT_KEY_NAME,
    DATA_DIR_ID_FILE,
    LEGACY_SECRETS_FILE,
    PEPPER_NAME,
    SecretStoreUnavailable,
    local_secret,
    read_local_secret,
    secrets_file,
)
from console.settings import Settings
from console.store import audit

POLICY = """
providers:
  lab: {{kind: openai_compat, base_url: "{url}", prices: {{m: {{input: 1, output: 1}}}}}}
routes:
  - {{intent: echo, primary: lab/m, max_retries: 0}}
default_route: echo
"""

GOLDEN = """name: echo
route: route:echo
threshold: 1
tests:
  - input: the answer is 42
    assert: [{type: contains, value: '42'}]
"""


def test_no_secret_is_under_the_data_dir_after_a_realistic_run(tmp_path: Path, upstream: FakeOpenAI) -> None:
    data_dir = tmp_path / "data"
    settings = Settings(data_dir=data_dir)
    with fleetdeck_serve(data_dir, POLICY.format(url=upstream.base_url)) as served:
        made = run_cli(data_dir, "keys", "create", "--name", "app", "--env", "dev")
        assert made.returncode == 0, made.stderr
        app_key = made.stdout.strip()
        exercise(served, app_key)
        golden = tmp_path / "echo.yaml"
        golden.write_text(GOLDEN)
        ran = run_cli(data_dir, "eval", "run", str(golden))  # makes and keeps the CLI's eval key
        assert ran.returncode == 0, ran.stdout + ran.stderr
        assert run_cli(data_dir, "keys", "revoke", "app").returncode == 0
        verified = run_cli(data_dir, "audit", "verify")
        assert verified.returncode == 0 and "audit chain holds" in verified.stdout, verified.stdout
        needles = secrets_of(settings, served.key, app_key)
        assert "the CLI's eval key" in needles
        while_serving = files_under(data_dir)
        assert {"admin.json", "fleetdeck.duckdb"} <= {path.name for path in while_serving}
        assert found_in(while_serving, needles) == []
    with Engine(settings) as engine:  # the console's path: its dev key, made on first run
        console_key, just_made = engine.console_key()
        assert just_made
    exported = run_cli(data_dir, "audit", "export", "--out", str(tmp_path / "evidence"))
    assert exported.returncode == 0, exported.stderr

    needles = secrets_of(settings, served.key, app_key)
    assert needles["the console's dev key"] == console_key.encode()
    stopped = files_under(data_dir)
    assert {"fleetdeck.duckdb", "checkpoints.jsonl"} <= {path.name for path in stopped}
    assert found_in(stopped, needles) == []

    # They are all in the config dir's file, 0600 in a 0700 folder, under this data dir's entry.
    path = secrets_file(settings)
    assert not path.resolve().is_relative_to(data_dir.resolve())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    entry = orjson.loads(path.read_bytes())["data_dirs"][(data_dir / DATA_DIR_ID_FILE).read_text().strip()]
    assert {AUDIT_KEY_NAME, PEPPER_NAME, "eval-key", CONSOLE_KEY_SECRET} <= set(entry["secrets"])


def secrets_of(settings: Settings, *keys: str) -> dict[str, bytes]:
    """What must never be found in the data dir: the signing key, the pepper and every key made."""
    signing_key = read_local_secret(AUDIT_KEY_NAME, settings)
    pepper = read_local_secret(PEPPER_NAME, settings)
    assert signing_key and pepper
    needles = {
        "audit signing key (hex)": signing_key.encode(),
        "audit signing key (raw)": bytes.fromhex(signing_key),
        "pepper": pepper.encode(),
        **{f"virtual key {n}": key.encode() for n, key in enumerate(keys)},
    }
    for what, name in (("the CLI's eval key", "eval-key"), ("the console's dev key", CONSOLE_KEY_SECRET)):
        if (key := read_local_secret(name, settings)) is not None:
            assert key.startswith("fd-")
            needles[what] = key.encode()
    return needles


def files_under(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if path.is_file()]


def found_in(files: list[Path], needles: dict[str, bytes]) -> list[tuple[str, str]]:
    """(what, file) for every secret whose bytes are in a file."""
    contents = {str(path): path.read_bytes() for path in files}
    return [
        (what, path) for path, data in contents.items() for what, needle in needles.items() if needle in data
    ]


def exercise(served: Served, app_key: str) -> None:
    """JSON and streamed calls with the served key and with the CLI's key."""
    for key in (served.key, app_key):
        client = openai.OpenAI(base_url=served.base_url, api_key=key, max_retries=0)
        answer = client.chat.completions.create(
            model="route:echo", messages=[{"role": "user", "content": "hi"}]
        )
        assert answer.choices[0].message.content
        chunks = client.chat.completions.create(
            model="route:echo", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        assert any(chunk.choices and chunk.choices[0].delta.content for chunk in chunks)


def test_a_data_dir_of_an_earlier_version_has_its_secrets_moved_out(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data_dir = tmp_path / "data"
    old = Settings(data_dir=data_dir, config_dir=tmp_path / "old-config")
    with Engine(old) as engine:
        _, token = engine.key_admin.create("app", "dev", actor="test")  # an audit entry, signed at stop
    # The earlier layout: the same secrets in `<data dir>/local-secrets.json`, nothing in a config dir.
    old_file = secrets_file(old)
    values = orjson.loads(old_file.read_bytes())["data_dirs"].popitem()[1]["secrets"]
    old_file.unlink()
    (data_dir / DATA_DIR_ID_FILE).unlink()
    legacy = data_dir / LEGACY_SECRETS_FILE
    legacy.write_bytes(orjson.dumps(values))
    legacy.chmod(0o600)

    settings = Settings(data_dir=data_dir, config_dir=tmp_path / "config")
    with caplog.at_level(logging.INFO, logger="fleetdeck.secrets"), Engine(settings) as engine:
        assert engine.key_admin.registry.accepts(token)
        verification = engine.verify_audit()
        assert verification.ok and verification.checkpoints >= 1, verification.report()
    assert not legacy.exists()
    moved = [record.getMessage() for record in caplog.records if "moved" in record.getMessage()]
    assert len(moved) == 1 and str(legacy) in moved[0] and str(secrets_file(settings)) in moved[0]
    assert read_local_secret(AUDIT_KEY_NAME, settings) == values[AUDIT_KEY_NAME]

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="fleetdeck.secrets"), Engine(settings) as engine:
        assert engine.key_admin.registry.accepts(token)
    assert not [record for record in caplog.records if "moved" in record.getMessage()]  # once


def test_two_data_dirs_keep_their_own_secrets_and_one_that_moves_keeps_its_own(tmp_path: Path) -> None:
    first, second = Settings(data_dir=tmp_path / "a"), Settings(data_dir=tmp_path / "b")
    assert local_secret(PEPPER_NAME, first) != local_secret(PEPPER_NAME, second)
    pepper = local_secret(PEPPER_NAME, first)
    (tmp_path / "a").rename(tmp_path / "moved")
    assert read_local_secret(PEPPER_NAME, Settings(data_dir=tmp_path / "moved")) == pepper


def test_the_config_dir_is_xdg_and_never_inside_the_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FLEETDECK_CONFIG_DIR")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert Settings(data_dir=tmp_path / "data").config_dir == tmp_path / "xdg" / "fleetdeck"
    monkeypatch.setenv("FLEETDECK_CONFIG_DIR", str(tmp_path / "data" / "config"))
    inside = Settings(data_dir=tmp_path / "data")
    with pytest.raises(SecretStoreUnavailable, match="inside the data dir"):
        local_secret(PEPPER_NAME, inside)
    assert not (tmp_path / "data" / "config").exists()


def test_secrets_in_the_environment_are_used_and_not_written_anywhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    signing_key, pepper = audit.new_signing_secret(), "pepper-from-the-secret-manager"
    monkeypatch.setenv("FLEETDECK_SECRET_AUDIT_SIGNING_KEY", signing_key)
    monkeypatch.setenv("FLEETDECK_SECRET_VIRTUAL_KEY_PEPPER", pepper)
    settings = Settings(data_dir=tmp_path / "data", config_dir=tmp_path / "config")
    with Engine(settings) as engine:
        _, token = engine.key_admin.create("app", "dev", actor="test")
        assert engine.key_admin.registry.hash_of(token) == key_hash(token, pepper)
        public_key = audit.signing_key(signing_key).public_key().public_bytes_raw().hex()
        assert engine.checkpointer.public_key == public_key
    assert not secrets_file(settings).exists()
    written = [path.read_bytes() for path in (tmp_path / "data").rglob("*") if path.is_file()]
    assert not any(pepper.encode() in data or signing_key.encode() in data for data in written)
