from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
import pyarrow as pa
import pytest

from console.engine import Engine
from console.settings import Settings
from console.store.flushed import Flushed
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


def test_a_batch_keeps_its_good_rows_when_arrow_or_duckdb_refuse_others(engine: Engine) -> None:
    good = [Trace(workflow_id="good", step=n) for n in range(3)]
    engine.recorder.record(good[0])
    engine.recorder.record(Trace(workflow_id="not-an-int", step="three"))  # type: ignore[arg-type]
    engine.recorder.record(good[1])
    engine.recorder.record(Trace(workflow_id="no-status", status=None))  # type: ignore[arg-type]
    engine.recorder.record(good[2])
    assert engine.recorder.flush()

    cur = engine.db.cursor()
    stored = cur.execute("SELECT request_id, step FROM traces ORDER BY step").fetchall()
    assert stored == [(t.request_id, t.step) for t in good]
    rejected = (engine.settings.spool_dir / "rejected" / "traces.jsonl").read_bytes().splitlines()
    entries = {orjson.loads(line)["row"]["workflow_id"]: orjson.loads(line) for line in rejected}
    assert set(entries) == {"not-an-int", "no-status"}
    assert entries["not-an-int"]["row"]["step"] == "three"
    assert "status" in entries["no-status"]["error"]


def test_timestamps_round_trip_exactly_and_missing_values_are_null(engine: Engine) -> None:
    with_micros = datetime(2026, 11, 1, 12, 30, 15, 250001)
    whole_second = datetime(2026, 11, 1, 23, 59, 59)  # spooled without a fraction
    first = Trace(ts_start=with_micros, ts_end=whole_second)
    second = Trace(ts_start=whole_second)  # ts_end, and every other optional field, None
    engine.recorder.record(first, Payload(payload_ref="p", request_id=first.request_id, ts=whole_second))
    engine.recorder.record(second)
    engine.recorder.record_outcome(Outcome(task_id="t", status="resolved", ts=with_micros))
    assert engine.recorder.flush()

    cur = engine.db.cursor()
    rows = cur.execute(
        "SELECT ts_start, ts_end, workflow_id, step, attempt_log, finish_reasons, schema_valid "
        "FROM traces WHERE request_id IN (?, ?) ORDER BY ts_start",
        [first.request_id, second.request_id],
    ).fetchall()
    assert rows == [
        (with_micros, whole_second, None, None, None, None, None),
        (whole_second, None, None, None, None, None, None),
    ]
    assert cur.execute("SELECT ts FROM payloads").fetchall() == [(whole_second,)]
    assert cur.execute("SELECT ts FROM outcomes").fetchall() == [(with_micros,)]


def test_an_offset_timestamp_is_stored_as_its_utc_time(engine: Engine) -> None:
    aware = datetime(2026, 11, 1, 14, 0, 0, 5, tzinfo=timezone(timedelta(hours=2)))
    trace = Trace(ts_start=aware)
    engine.recorder.record(trace)
    assert engine.recorder.flush()
    stored = engine.db.cursor().execute("SELECT ts_start FROM traces").fetchall()
    assert stored == [(datetime(2026, 11, 1, 12, 0, 0, 5),)]


def _segment(layouts: dict[str, list[str]], *rows: list[object]) -> bytes:
    lines = [orjson.dumps({"spool": 2, "layouts": layouts})] + [orjson.dumps(row) for row in rows]
    return b"\n".join(lines) + b"\n"


def test_a_segment_replays_by_the_field_names_of_its_own_header(settings: Settings) -> None:
    # Written by another version: fields in another order, one missing, one this version lacks.
    layouts = {"traces": ["status", "workflow_id", "request_id", "ts_start", "retired_field"]}
    settings.spool_dir.mkdir(parents=True)
    (settings.spool_dir / "000000000001.jsonl").write_bytes(
        _segment(
            layouts,
            ["traces", "error", "older", "01OLDER0000000000000000001", "2026-10-01T08:00:00.5", 7],
            ["traces", "ok", "older", "01OLDER0000000000000000002"],  # one value short: refused
        )
    )
    with Engine(settings) as engine:
        stored = engine.db.cursor().execute(
            "SELECT request_id, status, workflow_id, ts_start, step FROM traces"
        )
        assert stored.fetchall() == [
            ("01OLDER0000000000000000001", "error", "older", datetime(2026, 10, 1, 8, 0, 0, 500000), None)
        ]
    rejected = orjson.loads((settings.spool_dir / "rejected" / "traces.jsonl").read_bytes())
    assert rejected["row"]["values"] == ["ok", "older", "01OLDER0000000000000000002"]
    assert "expected 5 values" in rejected["error"]
    assert not list(settings.spool_dir.glob("*.jsonl"))


def test_spooled_lines_hold_values_in_the_headers_order(engine: Engine) -> None:
    trace = Trace(workflow_id="positional", attempt_log=[{"provider": "local"}])
    engine.recorder.record(trace)
    segment = sorted(engine.settings.spool_dir.glob("*.jsonl"))[-1].read_bytes().splitlines()
    header, line = orjson.loads(segment[0]), orjson.loads(segment[-1])
    fields = dict(zip(header["layouts"]["traces"], line[1:], strict=True))
    assert line[0] == "traces"
    assert fields["request_id"] == trace.request_id
    assert fields["attempt_log"] == [{"provider": "local"}]
    assert engine.recorder.flush()


def test_flush_listeners_hear_what_each_flush_stored_and_a_failing_one_harms_nothing(engine: Engine) -> None:
    heard: list[Flushed] = []

    def broken(flushed: Flushed) -> None:
        raise RuntimeError("a listener's own bug")

    engine.recorder.on_flush(broken)
    stop = engine.recorder.on_flush(heard.append)
    traces = [Trace(workflow_id=f"listened-{i}") for i in range(3)]
    for trace in traces:
        engine.recorder.record(trace)
    engine.recorder.record_outcome(Outcome(task_id="t-1", workflow_id="wf", status="resolved"))
    assert engine.recorder.flush()  # the listeners are called before flush() returns
    assert sum(f.counts.get("traces", 0) for f in heard) == 3
    assert sum(f.counts.get("outcomes", 0) for f in heard) == 1
    pushed = [rid for f in heard if f.traces is not None for rid in f.traces["request_id"].to_pylist()]
    assert sorted(pushed) == sorted(t.request_id for t in traces)
    stop()
    before = len(heard)
    engine.recorder.record(Trace(workflow_id="unheard"))
    assert engine.recorder.flush()
    assert len(heard) == before
    assert engine.db.cursor().execute("SELECT count(*) FROM traces").fetchone() == (4,)
