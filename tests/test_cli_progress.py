"""Long CLI jobs show a progress bar on stderr when it is a terminal, and nothing extra when it is not."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from fakes.openai_upstream import FakeOpenAI
from terminal import on_terminal

TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")
SAMPLES = Path(__file__).parent.parent / "sample_traces"


def piped(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "console", *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        check=False,
    )


def assert_same_shape(shown: str, quiet: str) -> None:
    """The same lines, with nothing of a progress bar (escape sequences, bar glyphs) among them."""
    assert len(shown.splitlines()) == len(quiet.splitlines())
    assert not {"\x1b", "\r", "━"} & set(shown)


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


POLICY = """
providers:
  lab: {{kind: openai_compat, base_url: "{url}", prices: {{m: {{input: 1, output: 1}}}}}}
routes:
  - {{intent: echo, primary: lab/m, max_retries: 0}}
default_route: echo
"""
GOLDEN = """
name: echo
route: route:echo
threshold: 1
tests:
  - input: the answer is 42
    assert: [{type: contains, value: '42'}]
  - input: the answer is 43
    assert: [{type: contains, value: '43'}]
  - input: the answer is 44
    assert: [{type: contains, value: '44'}]
"""


def test_eval_run_counts_its_cases_on_a_terminal(tmp_path: Path, upstream: FakeOpenAI) -> None:
    policy = tmp_path / "routes.yaml"
    policy.write_text(POLICY.format(url=upstream.base_url))
    golden_set = tmp_path / "echo.yaml"
    golden_set.write_text(GOLDEN)
    args = ("eval", "run", str(golden_set), "--policy", str(policy))
    shown = on_terminal(*args, data_dir=tmp_path / "tty")
    quiet = piped(*args, data_dir=tmp_path / "pipe")
    assert shown.returncode == quiet.returncode == 0, shown.stdout + shown.stderr
    # three cases answered, the traces read, three cases checked
    assert "case 3/3 checked" in shown.stderr and "7/7" in shown.stderr and "100%" in shown.stderr
    assert "3/3 passed" in shown.stdout and "3/3 passed" in quiet.stdout
    assert_same_shape(shown.stdout, quiet.stdout)  # latencies and run ids differ, nothing else
    assert "eval run" not in quiet.stderr and "7/7" not in quiet.stderr


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("progress") / "data"
    done = piped("import", str(SAMPLES), data_dir=data_dir)
    assert done.returncode == 0, done.stderr
    return data_dir


@pytest.mark.parametrize(
    ("args", "shows"),
    [
        (("audit", "export", "--from", "2026-09-01", "--out", "{out}"), "7/7"),  # 5 tables, verify, summary
        (("lake", "export", "--to", "{out}"), "5/5"),  # one step per table
        (("drift", "--as-of", "2026-10-19", "--workflow", "support_triage"), "the last 7 days"),
        (("retention", "apply", "--dry-run"), "counting what is past retention"),
    ],
    ids=["audit-export", "lake-export", "drift", "retention"],
)
def test_long_jobs_show_progress_only_on_a_terminal(
    sample: Path, tmp_path: Path, args: tuple[str, ...], shows: str
) -> None:
    def run_to(out: Path) -> list[str]:
        return [arg.format(out=out) for arg in args]

    shown = on_terminal(*run_to(tmp_path / "tty"), data_dir=sample)
    quiet = piped(*run_to(tmp_path / "pipe"), data_dir=sample)
    assert shown.returncode == quiet.returncode == 0, shown.stdout + shown.stderr
    assert shows in shown.stderr and "100%" in shown.stderr and ": done" in shown.stderr, shown.stderr
    same = quiet.stdout.replace(str(tmp_path / "pipe"), str(tmp_path / "tty"))
    assert TIMESTAMP.sub("<now>", shown.stdout) == TIMESTAMP.sub("<now>", same)  # retention's cut-offs
    assert shown.stdout and quiet.stderr == ""
