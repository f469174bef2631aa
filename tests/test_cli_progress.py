"""Long CLI jobs show a progress bar on stderr when it is a terminal, and nothing extra when it is not."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from tests.terminal import on_terminal

SAMPLES = Path(__file__).parent.parent / "sample_traces"


def piped(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "console", *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        check=False,
    )


def jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in rows))
    return path


@pytest.fixture
def traces(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    for part in range(2):
        rows = [
            {"request_id": f"01JREQ{part}{n:019d}", "ts_start": "2026-10-01T10:00:00", "status": "ok"}
            for n in range(5)
        ]
        jsonl(folder / f"traces_{part}.jsonl", rows)
    return folder


def test_import_shows_its_steps_on_a_terminal_and_stdout_is_unchanged(traces: Path, tmp_path: Path) -> None:
    shown = on_terminal("import", str(traces), data_dir=tmp_path / "tty")
    quiet = piped("import", str(traces), data_dir=tmp_path / "pipe")
    assert shown.returncode == quiet.returncode == 0, shown.stderr
    # two files checked, two inserted, the commit: five steps
    assert "5/5" in shown.stderr and "100%" in shown.stderr, shown.stderr
    assert "import" in shown.stderr
    assert shown.stdout == quiet.stdout
    assert "rows into traces" in shown.stdout
    assert quiet.stderr == ""
