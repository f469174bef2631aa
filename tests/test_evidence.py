"""The evidence pack, exported from a store with sample traces and live audit entries."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from console.engine import Engine
from console.settings import Settings
from console.store import importer

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def store(tmp_path: Path) -> Settings:
    settings = Settings(data_dir=tmp_path / "data")
    with Engine(settings) as engine:
        importer.import_files(engine.db.cursor(), [REPO / "sample_traces"])
        engine.oversight.stop_route("refund_agent", "refunds paid twice", actor="oncall@box")
    return settings


def test_the_pack_holds_the_window_and_a_summary_by_article(store: Settings, tmp_path: Path) -> None:
    out = tmp_path / "pack"
    command = [
        sys.executable,
        "-m",
        "console",
        "audit",
        "export",
        "--from",
        "2026-10-01",
        "--to",
        "2026-11-01",
    ]
    done = subprocess.run(
        [*command, "--out", str(out), "--data-dir", str(store.data_dir)],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    with Engine(store) as engine:
        (expected,) = (
            engine.db.cursor()
            .execute("SELECT count(*) FROM traces WHERE ts_start >= '2026-10-01' AND ts_start < '2026-11-01'")
            .fetchall()[0]
        )
    assert pq.read_table(out / "traces.parquet").num_rows == expected > 0
    audit = pq.read_table(out / "audit_log.parquet").to_pylist()
    assert audit and all("2026-10-01" <= f"{row['ts']:%Y-%m-%d}" < "2026-11-01" for row in audit)
    summary = (out / "SUMMARY.md").read_text()
    for heading in ("Art. 12", "Art. 14", "Art. 19", "Art. 26"):
        assert f"## {heading}" in summary
    assert "it holds" in summary and f"{expected:,} calls recorded" in summary
    assert (out / "policy.yaml").read_text().startswith("#") and (out / "verification.json").exists()


def test_a_broken_chain_says_so_in_the_pack(store: Settings, tmp_path: Path) -> None:
    import duckdb

    with duckdb.connect(str(store.db_path)) as con:
        con.execute("DROP TRIGGER audit_log_no_update ON audit_log")
        con.execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = 5")
    out = tmp_path / "pack"
    command = [
        sys.executable,
        "-m",
        "console",
        "audit",
        "export",
        "--out",
        str(out),
        "--data-dir",
        str(store.data_dir),
    ]
    assert subprocess.run(command, capture_output=True, cwd=REPO, check=False).returncode == 0
    assert "is BROKEN" in (out / "SUMMARY.md").read_text() and "seq 5" in (out / "SUMMARY.md").read_text()
