"""The audit trail: chained, checkpointed, verifiable; edits of any kind are found at the right entry."""

from __future__ import annotations

import functools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

import duckdb
import pyarrow as pa
import pytest

from console.clock import utc_now
from console.engine import Engine
from console.settings import Settings
from console.store import audit
from console.store.audit import AuditEvent

ENTRIES = 240
CHILD = Path(__file__).parent / "recording_child.py"
REPO = Path(__file__).resolve().parents[1]
TRIGGERS = ("audit_log_no_update", "audit_log_no_delete")


def record_events(settings: Settings, n: int) -> None:
    with Engine(settings) as engine:
        engine.start_recorder()
        for i in range(n):
            payload = {"i": i, "amount_usd": round(i * 1.37, 2), "note": f"event {i} ✓"}
            engine.recorder.record_audit(
                AuditEvent(
                    actor=f"user{i % 7}",
                    actor_kind="human",
                    action="test.event",
                    subject=f"s{i}",
                    payload=payload,
                )
            )
            if i % 50 == 49:
                assert engine.recorder.flush()


@pytest.fixture(scope="module")
def populated(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A store with ENTRIES chained entries, signed every 40 and at shutdown."""
    settings = Settings(data_dir=tmp_path_factory.mktemp("audit") / "data", audit_checkpoint_every=40)
    record_events(settings, ENTRIES)
    return settings


def verify_copy(
    settings: Settings, workdir: Path, mutate: Callable[[duckdb.DuckDBPyConnection], None]
) -> audit.Verification:
    """Copy the database, mutate the copy as an attacker with the file would, verify it.

    The checkpoint file stays where it is (outside the database) and the public key is
    the instance's, as `fleetdeck audit verify` uses them."""
    workdir.mkdir(exist_ok=True)
    for stale in workdir.glob("fleetdeck.duckdb*"):  # a WAL left by the last copy would replay into this one
        stale.unlink()
    copy = workdir / "fleetdeck.duckdb"
    shutil.copyfile(settings.db_path, copy)
    with duckdb.connect(str(copy)) as con:
        for trigger in TRIGGERS:  # such an attacker drops the guardrail first
            con.execute(f"DROP TRIGGER {trigger} ON audit_log")
        mutate(con)
        return audit.verify(con, settings.audit_checkpoint_file, public_key(settings))


def public_key(settings: Settings) -> str:
    return _public_key(settings.data_dir)


@functools.cache
def _public_key(data_dir: Path) -> str:
    with Engine(Settings(data_dir=data_dir)) as engine:
        return engine.checkpointer.public_key


def test_a_recorded_chain_verifies_with_its_checkpoints(populated: Settings) -> None:
    with Engine(populated) as engine:
        verification = engine.verify_audit()
        stored, last = (
            engine.db.cursor().execute("SELECT count(*), max(seq) FROM audit_checkpoints").fetchall()[0]
        )
    assert verification.ok, verification.report()
    # Signed at the first batch boundary after every 40 entries, and once more at shutdown.
    assert verification.entries == ENTRIES and verification.checkpoints == stored >= ENTRIES // 50
    assert last == ENTRIES
    lines = populated.audit_checkpoint_file.read_bytes().splitlines()
    assert len(lines) == stored


def test_the_cli_exits_1_naming_the_first_bad_entry(populated: Settings, tmp_path: Path) -> None:
    def edit(con: duckdb.DuckDBPyConnection) -> None:
        con.execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = 17")

    shutil.copytree(populated.data_dir, tmp_path / "copy")
    with duckdb.connect(str(tmp_path / "copy" / "fleetdeck.duckdb")) as con:
        con.execute("DROP TRIGGER audit_log_no_update ON audit_log")
        edit(con)
    command = [sys.executable, "-m", "console", "audit", "verify", "--data-dir", str(tmp_path / "copy")]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=120, check=False)
    assert done.returncode == 1 and "seq 17" in done.stderr
    clean = subprocess.run(
        [*command[:-1], str(populated.data_dir)], capture_output=True, text=True, cwd=REPO, check=False
    )
    assert clean.returncode == 0, clean.stderr


COLUMNS = (
    "actor",
    "actor_kind",
    "action",
    "subject",
    "payload",
    "event_id",
    "payload_hash",
    "prev_hash",
    "canonical",
    "hash",
)


def flip(rng: random.Random, text: str) -> str:
    """One character changed for another of its kind (digit for digit, letter for letter)."""
    at = rng.choice([i for i, c in enumerate(text) if c.isalnum()])
    pool = "0123456789" if text[at].isdigit() else "abcdefghijklmnopqrstuvwxyz"
    return text[:at] + rng.choice([c for c in pool if c != text[at]]) + text[at + 1 :]


def flip_column(con: duckdb.DuckDBPyConnection, rng: random.Random, column: str, seq: int) -> None:
    (value,) = con.execute(f"SELECT {column}::VARCHAR FROM audit_log WHERE seq = ?", [seq]).fetchall()[0]
    (kind,) = con.execute(f"SELECT typeof({column}) FROM audit_log WHERE seq = ?", [seq]).fetchall()[0]
    for _ in range(50):  # a flip can make JSON invalid (a leading zero): the column would refuse it
        flipped = flip(rng, value)
        (fits,) = con.execute(f"SELECT TRY_CAST(? AS {kind}) IS NOT NULL", [flipped]).fetchall()[0]
        if fits:  # checked first: a refused UPDATE would abort the caller's transaction
            con.execute(f"UPDATE audit_log SET {column} = ? WHERE seq = ?", [flipped, seq])
            return
    raise AssertionError(f"could not flip {column} of {seq}")


def mutation(rng: random.Random) -> tuple[str, int, Callable[[duckdb.DuckDBPyConnection], None]]:
    """A random mutation and the first sequence number it must be reported at."""
    kind = rng.choice(["flip", "flip", "delete", "swap", "truncate"])
    k = rng.randint(1, ENTRIES)
    if kind == "flip":
        column = rng.choice([*COLUMNS, "ts"])

        def edit(con: duckdb.DuckDBPyConnection) -> None:
            if column == "ts":
                con.execute("UPDATE audit_log SET ts = ts + INTERVAL 1 MICROSECOND WHERE seq = ?", [k])
                return
            flip_column(con, rng, column, k)

        return f"flip {column}", k, edit
    if kind == "delete":
        return kind, k, lambda con: con.execute("DELETE FROM audit_log WHERE seq = ?", [k])
    if kind == "truncate":
        return kind, k, lambda con: con.execute("DELETE FROM audit_log WHERE seq >= ?", [k])
    j = rng.randint(1, ENTRIES - 1)
    k = rng.randint(j + 1, ENTRIES)

    def swap(con: duckdb.DuckDBPyConnection) -> None:
        con.execute("UPDATE audit_log SET seq = -1 WHERE seq = ?", [j])
        con.execute("UPDATE audit_log SET seq = ? WHERE seq = ?", [j, k])
        con.execute("UPDATE audit_log SET seq = ? WHERE seq = -1", [k])

    return "swap", j, swap


@pytest.mark.parametrize("batch", range(10))
def test_1000_random_mutations_are_each_found_at_the_right_entry(
    populated: Settings, tmp_path: Path, batch: int
) -> None:
    """Each mutation is made and verified in a transaction of one copy, rolled back after: the
    verifier reads what an attacker's committed change would show, without a copy per mutation."""
    rng = random.Random(batch)
    copy = tmp_path / "fleetdeck.duckdb"
    shutil.copyfile(populated.db_path, copy)
    key = public_key(populated)
    with duckdb.connect(str(copy)) as con:
        assert audit.verify(con, populated.audit_checkpoint_file, key).ok
        for n in range(100):
            kind, expected, mutate = mutation(rng)
            con.execute("BEGIN")
            for trigger in TRIGGERS:  # such an attacker drops the guardrail first
                con.execute(f"DROP TRIGGER {trigger} ON audit_log")
            mutate(con)
            found = audit.verify(con, populated.audit_checkpoint_file, key)
            con.execute("ROLLBACK")
            assert not found.ok, f"mutation {batch * 100 + n} ({kind} at {expected}) went unnoticed"
            assert found.first_bad_seq == expected, f"{kind}: {found.report()}"


def test_deleting_the_checkpoints_in_the_database_still_catches_truncation(
    populated: Settings, tmp_path: Path
) -> None:
    def truncate(con: duckdb.DuckDBPyConnection) -> None:
        con.execute("DELETE FROM audit_log WHERE seq > 200")
        con.execute("DELETE FROM audit_checkpoints")

    found = verify_copy(populated, tmp_path / "copy", truncate)
    assert found.first_bad_seq == 201 and "truncated" in (found.problem or "")


def test_a_rewritten_chain_fails_against_the_signed_checkpoints(populated: Settings, tmp_path: Path) -> None:
    """An attacker who edits entry 100 and re-hashes everything after it still cannot re-sign."""

    def rewrite(con: duckdb.DuckDBPyConnection) -> None:
        rows = con.execute(
            "SELECT seq, ts, actor, actor_kind, action, subject, payload, event_id "
            "FROM audit_log WHERE seq >= 100 ORDER BY seq"
        ).fetchall()
        (prev,) = con.execute("SELECT hash FROM audit_log WHERE seq = 99").fetchall()[0]
        con.execute("DELETE FROM audit_log WHERE seq >= 100")
        for seq, ts, actor, kind, action, subject, payload, event_id in rows:
            event = AuditEvent(
                actor="mallory" if seq == 100 else actor,
                actor_kind=kind,
                action=action,
                subject=subject,
                payload=json.loads(payload),
                ts=ts,
                event_id=event_id,
            )
            entry = audit.chain(event, seq, prev)
            row = entry.row()
            row["payload"] = payload
            con.execute(
                f"INSERT INTO audit_log ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                list(row.values()),
            )
            prev = entry.hash

    found = verify_copy(populated, tmp_path / "copy", rewrite)
    assert not found.ok and "rewritten" in (found.problem or "")
    assert found.first_bad_seq is not None and found.first_bad_seq <= 100


def test_payloads_can_be_purged_and_the_chain_still_verifies(populated: Settings, tmp_path: Path) -> None:
    copy = populated.model_copy(update={"data_dir": tmp_path / "copy"})
    shutil.copytree(populated.data_dir, copy.data_dir)
    with Engine(copy) as engine:
        cur = engine.db.cursor()
        purged = audit.purge_payloads(cur, utc_now())
        assert purged == ENTRIES
        assert engine.verify_audit().ok
        with pytest.raises(duckdb.Error, match="append-only"):
            cur.execute("UPDATE audit_log SET actor = 'x' WHERE seq = 1")
        with pytest.raises(duckdb.Error, match="append-only"):
            cur.execute("DELETE FROM audit_log WHERE seq = 1")


def _read_acks(stream: IO[bytes], acks: list[str], ready: threading.Event) -> None:
    for line in stream:
        text = line.decode().strip()
        if text == "ready":
            ready.set()
        elif text:
            acks.append(text)


@pytest.mark.parametrize("run", range(5))
def test_sigkill_during_a_burst_of_audited_events(tmp_path: Path, run: int) -> None:
    data_dir = tmp_path / "data"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen(
        [sys.executable, str(CHILD), str(data_dir), "audit"], stdout=subprocess.PIPE, env=env
    )
    acks: list[str] = []
    ready = threading.Event()
    assert child.stdout is not None
    reader = threading.Thread(target=_read_acks, args=(child.stdout, acks, ready))
    reader.start()
    assert ready.wait(60), "the recording child did not start"
    time.sleep(random.Random(run).uniform(0.2, 1.5))
    child.send_signal(signal.SIGKILL)
    child.wait()
    reader.join()
    assert acks

    with Engine(Settings(data_dir=data_dir)) as engine:
        cur = engine.db.cursor()
        cur.register("acked", pa.table({"event_id": acks}))
        missing = cur.execute("SELECT count(*) FROM acked ANTI JOIN audit_log USING (event_id)").fetchall()[
            0
        ][0]
        verification = engine.verify_audit()
    assert missing == 0
    assert verification.ok, verification.report()
    assert verification.entries >= len(acks)
