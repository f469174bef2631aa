from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import orjson
import pyarrow as pa
import pytest

from console.engine import Engine
from console.settings import Settings
from console.store.trace import Outcome, Payload, Trace

CHILD = Path(__file__).with_name("recording_child.py")


def test_recorded_traces_reach_duckdb_with_their_types(engine: Engine) -> None:
    started = datetime(2026, 11, 1, 12, 30, 15, 250000)
    trace = Trace(
        ts_start=started,
        workflow_id="invoice_parsing",
        attempt_log=[{"provider": "openai", "status": "rate_limited"}, {"provider": "local"}],
        finish_reasons=["stop"],
        retrieval_doc_ids=["doc-1", "doc-2"],
        schema_valid=True,
        cost_usd=0.0125,
        payload_ref="p1",
    )
    engine.recorder.record(trace, Payload(payload_ref="p1", request_id=trace.request_id, request={"q": "hi"}))
    for _ in range(2500):
        engine.recorder.record(Trace(workflow_id="bulk"))
    assert engine.recorder.flush()

    cur = engine.db.cursor()
    row = cur.execute(
        "SELECT ts_start, attempt_log->>'$[0].status', finish_reasons, retrieval_doc_ids, "
        "schema_valid, cost_usd FROM traces WHERE request_id = ?",
        [trace.request_id],
    ).fetchone()
    assert row == (started, "rate_limited", ["stop"], ["doc-1", "doc-2"], True, 0.0125)
    assert cur.execute("SELECT request->>'q' FROM payloads WHERE payload_ref = 'p1'").fetchone() == ("hi",)
    assert cur.execute("SELECT count(*) FROM traces WHERE workflow_id = 'bulk'").fetchone() == (2500,)
    assert not list(engine.settings.spool_dir.glob("*.jsonl"))[:-1], "stored segments are deleted"


def _spool_line(trace: Trace) -> bytes:
    return orjson.dumps({"t": "traces", "r": trace}) + b"\n"


def test_replay_stores_leftover_segments_once_and_skips_a_torn_tail(settings: Settings) -> None:
    settings.spool_dir.mkdir(parents=True)
    traces = [Trace(workflow_id="left-behind") for _ in range(5)]
    segment = b"".join(_spool_line(t) for t in traces)
    (settings.spool_dir / "000000000001.jsonl").write_bytes(segment)
    # The same records again (a crash after DuckDB's commit, before the delete), then a torn line.
    (settings.spool_dir / "000000000002.jsonl").write_bytes(segment + _spool_line(Trace())[:40])

    with Engine(settings) as engine:
        assert engine.replayed == 10
        stored = (
            engine.db.cursor()
            .execute("SELECT request_id, count(*) FROM traces GROUP BY ALL ORDER BY 1")
            .fetchall()
        )
    assert stored == sorted((t.request_id, 1) for t in traces)
    assert not list(settings.spool_dir.glob("*.jsonl"))


def test_a_row_duckdb_refuses_is_set_aside_and_the_batch_kept(engine: Engine) -> None:
    good = Trace(workflow_id="good")
    engine.recorder.record(good)
    engine.recorder.record(Trace(workflow_id="bad", status=None))  # type: ignore[arg-type]
    assert engine.recorder.flush()

    cur = engine.db.cursor()
    assert cur.execute("SELECT request_id FROM traces").fetchall() == [(good.request_id,)]
    rejected = (engine.settings.spool_dir / "rejected" / "traces.jsonl").read_bytes().splitlines()
    assert len(rejected) == 1
    entry = orjson.loads(rejected[0])
    assert entry["row"]["workflow_id"] == "bad"
    assert "status" in entry["error"]


def _read_acks(stdout: object, acks: list[str], ready: threading.Event) -> None:
    for line in stdout:  # type: ignore[attr-defined]
        text = line.decode()
        if not text.endswith("\n"):
            break  # a torn last line was never a complete acknowledgement
        if text == "ready\n":
            ready.set()
        else:
            acks.append(text.strip())


@pytest.mark.parametrize("run", range(20))
def test_every_acknowledged_trace_survives_sigkill_exactly_once(tmp_path: Path, run: int) -> None:
    kill_after = random.Random(run).uniform(0.05, 1.5)
    data_dir = tmp_path / "data"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    child = subprocess.Popen([sys.executable, str(CHILD), str(data_dir)], stdout=subprocess.PIPE, env=env)
    acks: list[str] = []
    ready = threading.Event()
    reader = threading.Thread(target=_read_acks, args=(child.stdout, acks, ready))
    reader.start()
    assert ready.wait(60), "the recording child did not start"
    time.sleep(kill_after)
    child.send_signal(signal.SIGKILL)
    child.wait()
    reader.join()
    assert acks, "the child acknowledged nothing before it was killed"

    with Engine(Settings(data_dir=data_dir)) as engine:
        cur = engine.db.cursor()
        cur.register("acked", pa.table({"request_id": acks}))
        counts = cur.execute(
            "SELECT count(t.request_id), count(p.payload_ref) FROM acked a "
            "LEFT JOIN traces t USING (request_id) LEFT JOIN payloads p ON p.payload_ref = a.request_id"
        ).fetchone()
        duplicates = cur.execute(
            "SELECT count(*) FROM (SELECT request_id FROM traces GROUP BY ALL HAVING count(*) > 1)"
        ).fetchone()
    assert counts == (len(acks), len(acks)), f"lost acknowledged traces (killed after {kill_after:.2f}s)"
    assert duplicates == (0,)


def test_a_later_outcome_of_a_task_replaces_the_earlier(engine: Engine) -> None:
    engine.recorder.record_outcome(Outcome(task_id="t-1", status="failed", workflow_id="refund_agent"))
    engine.recorder.record_outcome(Outcome(task_id="t-1", status="resolved", workflow_id="refund_agent"))
    assert engine.recorder.flush()
    engine.recorder.record_outcome(Outcome(task_id="t-1", status="abandoned", workflow_id="refund_agent"))
    engine.recorder.record_outcome(Outcome(task_id="t-2", status="resolved", value=12.5))
    assert engine.recorder.flush()
    stored = engine.db.cursor().execute("SELECT task_id, status, value FROM outcomes ORDER BY 1").fetchall()
    assert stored == [("t-1", "abandoned", None), ("t-2", "resolved", 12.5)]
