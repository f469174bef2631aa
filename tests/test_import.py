from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from console.clock import utc_now
from console.engine import Engine
from console.settings import Settings
from console.store.importer import ImportRefused, import_files

TABLES = ("traces", "payloads", "outcomes", "evals", "audit_log")


def trace_row(n: int, **overrides: object) -> dict[str, object]:
    row: dict[str, object] = {
        "request_id": f"01JREQ{n:020d}",
        "ts_start": f"2026-10-0{1 + n % 9}T10:00:00",
        "status": "ok",
        "workflow_id": "support_triage",
        "task_id": f"task-{n // 2}",
        "cost_usd": 0.001 * n,
        "latency_ms": 120.5,
        "attempt_log": [{"provider": "openai", "status": "ok"}],
        "finish_reasons": ["stop"],
    }
    row.update(overrides)
    return row


def write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return path


def snapshot(engine: Engine) -> dict[str, list[tuple[object, ...]]]:
    cur = engine.db.cursor()
    return {t: cur.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall() for t in TABLES}


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "console", *args], capture_output=True, text=True, check=False
    )


def test_jsonl_import_is_typed_and_idempotent(tmp_path: Path, settings: Settings) -> None:
    path = write_jsonl(tmp_path / "traces.jsonl", [trace_row(n) for n in range(1, 6)])
    with Engine(settings) as engine:
        first = import_files(engine.db.cursor(), [path])
        again = import_files(engine.db.cursor(), [path])
        row = (
            engine.db.cursor()
            .execute(
                "SELECT ts_start, cost_usd, attempt_log->>'$[0].provider', finish_reasons "
                "FROM traces WHERE request_id = '01JREQ00000000000000000003'"
            )
            .fetchone()
        )
    assert [(f.table, f.rows, f.inserted) for f in first] == [("traces", 5, 5)]
    assert [(f.rows, f.inserted) for f in again] == [(5, 0)]
    assert row == (datetime(2026, 10, 4, 10), pytest.approx(0.003), "openai", ["stop"])


def test_malformed_file_exits_2_naming_file_row_and_column(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    good = write_jsonl(tmp_path / "traces.jsonl", [trace_row(n) for n in range(1, 4)])
    assert run_cli("import", str(good), "--data-dir", str(data_dir)).returncode == 0
    with Engine(Settings(data_dir=data_dir)) as engine:
        before = snapshot(engine)

    rows = [trace_row(n) for n in range(10, 20)]
    rows[6]["latency_ms"] = "fast"
    rows[8]["status"] = "weird"
    bad = tmp_path / "traces-more.parquet"
    pq.write_table(pa.Table.from_pylist([{**r, "latency_ms": str(r["latency_ms"])} for r in rows]), bad)
    done = run_cli("import", str(good), str(bad), "--data-dir", str(data_dir))

    assert done.returncode == 2
    assert f"{bad}, row 7, column 'latency_ms'" in done.stderr
    assert "'fast' is not a valid DOUBLE" in done.stderr
    with Engine(Settings(data_dir=data_dir)) as engine:
        assert snapshot(engine) == before


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            b'{"request_id": "a", "ts_start": "2026-01-01", "status": "ok"}\n{"request_id": ',
            "row 2: malformed JSON",
        ),
        (
            b'{"request_id": "a", "ts_start": "2026-01-01", "status": "ok"}\n\xff\xfe\n',
            "row 2: malformed JSON",
        ),
        (b"[1, 2]\n", "row 1: each line must be a JSON object"),
        (b'{"request_id": "a", "ts_start": "2026-01-01", "status": "ok", "colour": 1}\n', "column 'colour'"),
        (b'{"request_id": "a", "status": "ok"}\n', "column 'ts_start': required column"),
        (b'{"request_id": "a", "ts_start": "yesterday", "status": "ok"}\n', "row 1, column 'ts_start'"),
        (b'{"request_id": "a", "ts_start": "2026-01-01", "status": "fine"}\n', "is not one of ok, partial"),
        (b'{"request_id": "a", "ts_start": "2026-01-01", "status": null}\n', "a value is required"),
        (
            b'{"request_id": "a", "ts_start": "2026-01-01", "status": "ok", "step": 1.5}\n',
            "not a valid INTEGER",
        ),
        (
            b'{"request_id": "a", "ts_start": "2026-01-01", "status": "ok", "attempt_log": "{oops"}\n',
            "column 'attempt_log'",
        ),
        (
            b'{"request_id": "a", "ts_start": "2026-01-01", "status": "ok"}\n'
            b'{"request_id": "a", "ts_start": "2026-01-02", "status": "ok"}\n',
            "row 2, column 'request_id': repeats the key of row 1",
        ),
    ],
)
def test_each_kind_of_bad_input_is_named(
    tmp_path: Path, settings: Settings, content: bytes, expected: str
) -> None:
    path = tmp_path / "traces.jsonl"
    path.write_bytes(content)
    with Engine(settings) as engine:
        with pytest.raises(ImportRefused) as refused:
            import_files(engine.db.cursor(), [path])
        assert engine.db.cursor().execute("SELECT count(*) FROM traces").fetchone() == (0,)
    assert expected in str(refused.value)
    assert str(path) in str(refused.value)


def test_table_is_told_from_the_name_or_the_columns(tmp_path: Path, settings: Settings) -> None:
    outcome = {"task_id": "t1", "workflow_id": "w", "status": "resolved", "ts": "2026-10-01T00:00:00"}
    named_by_columns = write_jsonl(tmp_path / "export-42.jsonl", [outcome])
    unknown = write_jsonl(tmp_path / "export-43.jsonl", [{"x": 1}])
    with Engine(settings) as engine:
        done = import_files(engine.db.cursor(), [named_by_columns])
        with pytest.raises(ImportRefused, match="cannot tell which table"):
            import_files(engine.db.cursor(), [unknown])
    assert [(f.table, f.inserted) for f in done] == [("outcomes", 1)]


def test_rebase_to_now_moves_the_whole_set_to_end_now(tmp_path: Path, settings: Settings) -> None:
    traces = write_jsonl(tmp_path / "traces.jsonl", [trace_row(n) for n in range(1, 9)])
    outcome = {"task_id": "task-1", "workflow_id": "w", "status": "resolved", "ts": "2026-10-20T00:00:00"}
    outcomes = write_jsonl(tmp_path / "outcomes.jsonl", [outcome])
    with Engine(settings) as engine:
        before = utc_now()
        import_files(engine.db.cursor(), [traces, outcomes], rebase_to_now=True)
        cur = engine.db.cursor()
        latest = cur.execute("SELECT ts FROM outcomes").fetchone()
        span = cur.execute("SELECT max(ts_start) - min(ts_start) FROM traces").fetchone()
    assert latest is not None
    assert before <= latest[0] <= utc_now()
    assert span == (timedelta(days=7),)
