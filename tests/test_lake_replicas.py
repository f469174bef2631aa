"""The lake over three real `fleetdeck serve` replicas: what `lake attach` reads is what they stored.

Each replica records to its own DuckDB file and exports to one lake (FLEETDECK_LAKE). After
they stop, every named query run with `--lake` answers as it does over the union of the
three files, and pyarrow's dataset reader (not DuckDB) agrees on the counts and the spend.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pytest
from fakes.openai_upstream import FakeOpenAI
from gateway_process import Served, fleetdeck_serve, run_cli

from console import formats
from console.lake import layout
from console.store import queries, rollups
from console.store.db import Database

POLICY = """
providers:
  lab:
    kind: openai_compat
    base_url: "{url}"
    models: [mock-gpt]
    prices: {{mock-gpt: {{input: 1, output: 2}}}}
routes:
  - {{intent: triage, primary: lab/mock-gpt, max_retries: 0}}
  - {{intent: drafting, primary: lab/mock-gpt, max_retries: 0}}
default_route: triage
"""
# Named queries over the lake's tables (traces, evals, outcomes, audit log), as the panes run them.
COMPARED = (
    "cost_per_outcome",
    "spend_by_route_daily",
    "error_rate",
    "latency_slo",
    "routing_share",
    "judge_coverage",
    "spend_to_date",
    "recent_traces",
)


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


def traffic(served: Served, replica: int) -> None:
    """Calls on two routes, one of them failing upstream, and an outcome per task."""
    with httpx.Client(base_url=served.base_url, headers=served.auth, timeout=60) as client:
        for i in range(4 + replica):
            task = f"task-{replica}-{i}"
            route = "route:triage" if i % 2 else "route:drafting"
            headers = {"X-Fleetdeck-Task": task, "X-Fleetdeck-Workflow": f"wf-{i % 2}"}
            body = {"model": route, "messages": [{"role": "user", "content": f"hello {replica} {i}"}]}
            assert client.post("/chat/completions", json=body, headers=headers).status_code == 200
            outcome = {"task_id": task, "workflow_id": f"wf-{i % 2}", "status": "resolved", "value": i}
            assert client.post("/outcomes", json=outcome).status_code == 200


def wait_for_lake(lake: Path, replica: str, timeout_s: float = 30.0) -> None:
    """Until the replica's traces are in the lake (its export runs every 0.2 s here)."""
    deadline = time.monotonic() + timeout_s
    while not any(p.parent.name == f"replica={replica}" for p in layout.segments(lake, "traces")):
        assert time.monotonic() < deadline, f"replica {replica} exported nothing within {timeout_s} s"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, upstream: FakeOpenAI) -> tuple[Path, list[Path]]:
    """Three replicas served, given traffic and stopped; their lake and their data dirs."""
    root = tmp_path_factory.mktemp("lake-replicas")
    lake, dirs = root / "lake", [root / f"replica-{i}" for i in range(3)]
    env = {"FLEETDECK_LAKE": str(lake), "FLEETDECK_LAKE_EXPORT_INTERVAL_S": "0.2"}
    policy = POLICY.format(url=upstream.base_url)
    with ExitStack() as stack:
        replicas = [stack.enter_context(fleetdeck_serve(d, policy, env)) for d in dirs]
        for n, served in enumerate(replicas):
            traffic(served, n)
        for data_dir in dirs:  # exported while serving, not only at stop
            wait_for_lake(lake, layout.replica_id(data_dir))
    return lake, dirs


def union(dirs: list[Path]) -> Database:
    """One store holding every replica's traces, evals and outcomes, read from their DuckDB files."""
    db = Database(Path(":memory:"))
    cur = db.cursor()
    for data_dir in dirs:
        replica = Database(data_dir / "fleetdeck.duckdb")
        for table in ("traces", "evals", "outcomes"):
            cur.register("rows", replica.cursor().sql(f"SELECT * FROM {table}").to_arrow_table())
            cur.execute(f"INSERT INTO {table} BY NAME SELECT * FROM rows")
            cur.unregister("rows")
        replica.close()
    rollups.rebuild(cur)  # rows written past the recorder: the panes' rollups made from them
    return db


def lake_query(lake: Path, data_dir: Path, name: str) -> list[dict[str, object]]:
    done = run_cli(data_dir, "query", "--name", name, "--lake", str(lake), "--format", "json")
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout))


def rows_of(db: Database, name: str, data_dir: Path) -> list[dict[str, object]]:
    out = data_dir.parent / f"{name}.json"
    formats.write(queries.run(db.cursor(), name, {}), formats.Format.json, out)
    return list(json.loads(out.read_text()))


def test_named_queries_over_the_lake_equal_the_union_of_the_replicas(
    fleet: tuple[Path, list[Path]],
) -> None:
    lake, dirs = fleet
    store = union(dirs)
    (calls,) = store.cursor().execute("SELECT count(*) FROM traces WHERE operation = 'chat'").fetchall()[0]
    assert calls == 4 + 5 + 6
    for name in COMPARED:
        over_lake = lake_query(lake, dirs[0], name)
        assert over_lake, f"{name} found nothing: the comparison would prove nothing"
        assert over_lake == rows_of(store, name, dirs[0]), name


def test_a_second_engine_reads_the_lake_and_agrees_on_counts_and_spend(
    fleet: tuple[Path, list[Path]],
) -> None:
    lake, dirs = fleet
    (count, spend) = union(dirs).cursor().execute("SELECT count(*), sum(cost_usd) FROM traces").fetchall()[0]
    traces = ds.dataset(str(lake / "table=traces"), format="parquet", partitioning="hive").to_table()
    assert traces.num_rows == count > 0
    assert pc.sum(traces["cost_usd"]).as_py() == pytest.approx(spend)
    assert set(traces["replica"].to_pylist()) == {layout.replica_id(d) for d in dirs}


def test_the_lake_verifies_every_replicas_audit_chain_and_refuses_changes(
    fleet: tuple[Path, list[Path]],
) -> None:
    lake, dirs = fleet
    verified = run_cli(dirs[0], "audit", "verify", "--lake", str(lake))
    assert verified.returncode == 0, verified.stderr
    assert "audit chain holds" in verified.stdout
    env_lake = {**os.environ, "FLEETDECK_LAKE_ATTACH": str(lake)}
    refused = subprocess.run(
        [
            sys.executable,
            "-m",
            "console",
            "routes",
            "stop",
            "triage",
            "--reason",
            "test",
            "--data-dir",
            dirs[0],
        ],
        capture_output=True,
        text=True,
        env=env_lake,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 2
    assert "read-only" in refused.stderr


def test_lake_attach_without_a_terminal_summarises_every_replica(fleet: tuple[Path, list[Path]]) -> None:
    lake, dirs = fleet
    done = run_cli(dirs[0], "lake", "attach", str(lake))
    assert done.returncode == 0, done.stderr
    assert "3 replica(s)" in done.stdout
    missing = run_cli(dirs[0], "query", "--name", "recent_traces", "--lake", str(lake / "nowhere"))
    assert missing.returncode == 2 and "no lake at" in missing.stderr
