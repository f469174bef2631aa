"""The command line, run as a user runs it: `python -m console …` in a child process."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest

from console.engine import Engine
from console.settings import Settings


def fleetdeck(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "console", *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir after a first `fleetdeck` run: the sample traces, rebased to now."""
    data_dir = tmp_path_factory.mktemp("seeded")
    first = fleetdeck(data_dir=data_dir)
    assert first.returncode == 0, first.stderr
    assert "imported the sample traces" in first.stdout
    return data_dir


def test_first_run_seeds_the_store_and_later_runs_do_not(seeded: Path) -> None:
    again = fleetdeck("tui", data_dir=seeded)
    assert again.returncode == 0, again.stderr
    assert "imported" not in again.stdout
    with Engine(Settings(data_dir=seeded)) as engine:
        newest, workflows = (
            engine.db.cursor()
            .execute(
                "SELECT max(ts_start) > (now() AT TIME ZONE 'UTC')::TIMESTAMP - INTERVAL 1 DAY, "
                "count(DISTINCT workflow_id) FROM traces"
            )
            .fetchall()[0]
        )
    assert newest, "the sample traces were not rebased to end now"
    for workflow in ("invoice_parsing", "support_triage", "internal_doc_summaries", "refund_agent"):
        assert workflow in again.stdout
    assert workflows >= 4


def test_named_query_writes_json_csv_and_parquet_alike(seeded: Path, tmp_path: Path) -> None:
    args = ("query", "--name", "spend_by_route_daily", "--param", "from=2000-01-01")
    as_json = fleetdeck(*args, "--format", "json", data_dir=seeded)
    as_csv = fleetdeck(*args, "--format", "csv", data_dir=seeded)
    parquet = tmp_path / "spend.parquet"
    to_parquet = fleetdeck(*args, "--format", "parquet", "--out", str(parquet), data_dir=seeded)
    assert (as_json.returncode, as_csv.returncode, to_parquet.returncode) == (0, 0, 0), as_json.stderr

    from_json = orjson.loads(as_json.stdout)
    from_csv = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    from_parquet = pq.read_table(parquet).to_pylist()
    assert len(from_json) == len(from_csv) == len(from_parquet) > 50
    assert sum(r["calls"] for r in from_json) == sum(int(r["calls"]) for r in from_csv)
    assert sum(r["calls"] for r in from_parquet) == sum(r["calls"] for r in from_json)


def test_writes_are_refused_and_change_nothing(seeded: Path) -> None:
    count = "SELECT count(*) AS n FROM traces"
    before = orjson.loads(fleetdeck("query", count, "--format", "json", data_dir=seeded).stdout)
    for statement in (
        "DELETE FROM traces",
        "UPDATE traces SET cost_usd = 0",
        "DROP TABLE traces",
        "EXPLAIN ANALYZE DELETE FROM traces",
        "SELECT 1; DELETE FROM traces",
    ):
        refused = fleetdeck("query", statement, data_dir=seeded)
        assert refused.returncode == 2, statement
        assert "refused" in refused.stderr or "one statement" in refused.stderr, refused.stderr
    after = orjson.loads(fleetdeck("query", count, "--format", "json", data_dir=seeded).stdout)
    assert before == after and before[0]["n"] > 50_000


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("query", "--name", "no_such_query"), "no_such_query"),
        (("query", "--name", "latency_slo", "--param", "slo_ms=fast"), "slo_ms"),
        (("query", "--name", "latency_slo", "--param", "nonsense"), "expected key=value"),
        (("query", "SELECT 1", "--format", "parquet"), "--out"),
        (("query",), "--name"),
    ],
)
def test_bad_usage_exits_2_with_a_message(seeded: Path, args: tuple[str, ...], message: str) -> None:
    done = fleetdeck(*args, data_dir=seeded)
    assert done.returncode == 2
    assert message in done.stderr


def test_a_failing_query_exits_1_with_duckdbs_reason(seeded: Path) -> None:
    done = fleetdeck("query", "SELECT no_such_column FROM traces", data_dir=seeded)
    assert done.returncode == 1
    assert "no_such_column" in done.stderr


HOLD = "import duckdb, sys\ncon = duckdb.connect(sys.argv[1])\nprint('held', flush=True)\nsys.stdin.read()\n"


def test_a_database_held_by_another_process_is_an_error_naming_it(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    with Engine(settings) as engine:
        engine.start_recorder()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(settings.db_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        served = fleetdeck("serve", "--port", "0", data_dir=settings.data_dir)
        queried = fleetdeck("query", "SELECT 1", data_dir=settings.data_dir)
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(30)
    for result in (served, queried):
        assert result.returncode == 1, result.stderr
        assert f"it is held by PID {holder.pid} (" in result.stderr
        assert "Traceback" not in result.stderr
    with Engine(settings) as engine:  # the holder gone, the store opens as it was
        assert engine.verify_audit().ok
