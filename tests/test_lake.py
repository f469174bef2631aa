from __future__ import annotations

from pathlib import Path

import pyarrow.dataset as ds
import pytest

from console.engine import Engine
from console.lake import layout
from console.lake.attach import attach
from console.lake.compact import compact
from console.lake.export import export
from console.settings import Settings
from console.store.db import Database
from console.store.importer import import_files
from tests.test_import import trace_row, write_jsonl


def replica(tmp_path: Path, n: int) -> Path:
    data = tmp_path / f"r{n}"
    rows = [trace_row(n * 100 + i, task_id=f"task-{n}-{i}") for i in range(5 + n)]
    with Engine(Settings(data_dir=data)) as engine:
        import_files(engine.db.cursor(), [write_jsonl(tmp_path / f"r{n}.jsonl", rows)])
    return data


@pytest.fixture
def lake(tmp_path: Path) -> tuple[Path, list[Path]]:
    lake = tmp_path / "lake"
    dirs = [replica(tmp_path, n) for n in range(3)]
    for data in dirs:
        db = Database(data / "fleetdeck.duckdb")
        export(db, lake, layout.replica_id(data))
        assert export(db, lake, layout.replica_id(data))["traces"] == 0  # idempotent
        db.close()
    return lake, dirs


def test_attach_counts_and_spend_agree_with_pyarrow(lake: tuple[Path, list[Path]]) -> None:
    path, _ = lake
    db = attach(path)
    count, spend = db.cursor().execute("SELECT count(*), sum(cost_usd) FROM traces").fetchone() or (0, 0)
    table = ds.dataset(str(path / "table=traces"), format="parquet", partitioning="hive").to_table()
    assert count == table.num_rows == 5 + 6 + 7
    assert spend == pytest.approx(sum(table["cost_usd"].to_pylist()))


def test_compaction_keeps_rows_and_spend(lake: tuple[Path, list[Path]]) -> None:
    path, _ = lake
    before = attach(path).cursor().execute("SELECT count(*), round(sum(cost_usd), 9) FROM traces").fetchall()
    compact(path)
    after = attach(path).cursor().execute("SELECT count(*), round(sum(cost_usd), 9) FROM traces").fetchall()
    assert before == after
