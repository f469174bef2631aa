"""Start times with a full semantic cache: `fleetdeck serve` over a data dir holding N cache
entries in one scope, timed from spawn to the first `/healthz` 200 and to the first one
whose `cache.indexed` is true (stored entries searchable), side by side in one run:

- rebuilt: no saved index beside the database (the first start, or one after a crash);
- loaded: the indexes the previous stop saved (`cache-index/`), reconciled with the store.

Goal (issue 25): `/healthz` in ≤ 2 s with 100,000 cached entries.

Run alone: `.venv/bin/python bench/start.py [--entries 100000] [--rounds 2]`; writes
bench/out/start.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gateway import FLEETDECK_ENV, OUT, REPO, Server, free_port

DIMENSIONS = 384  # all-MiniLM-L6-v2's


def make_data_dir(data_dir: Path, entries: int) -> None:
    """A migrated store (an Engine opened once) holding `entries` cache entries in one scope."""
    data_dir.mkdir(parents=True)
    migrate = (
        "from pathlib import Path; from console.engine import Engine; from console.settings import Settings\n"
        f"with Engine(Settings(data_dir=Path({str(data_dir)!r}))): pass\n"
    )
    subprocess.run([sys.executable, "-c", migrate], check=True, cwd=REPO, env={**FLEETDECK_ENV})
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(entries, DIMENSIONS)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    now = datetime.now(UTC).replace(tzinfo=None)
    rows = pa.table(
        {
            "entry_id": [f"bench-{i}" for i in range(entries)],
            "exact_key": [f"exact-{i}" for i in range(entries)],
            "scope": ["bench-scope"] * entries,
            "route": ["default"] * entries,
            "embedder": ["minilm"] * entries,
            "vector": pa.FixedSizeListArray.from_arrays(vectors.reshape(-1), DIMENSIONS).cast(
                pa.list_(pa.float32())
            ),
            "response": ['{"choices": []}'] * entries,
            "model": ["local/bench"] * entries,
            "cost_usd": [0.0001] * entries,
            "created_at": [now] * entries,
            "expires_at": [now + timedelta(days=1)] * entries,
        }
    )
    con = duckdb.connect(str(data_dir / "fleetdeck.duckdb"))
    con.register("bench_rows", rows)
    con.execute("INSERT INTO cache_entries SELECT * FROM bench_rows")
    con.close()


def timed_start(data_dir: Path) -> dict[str, float | None]:
    """Seconds from spawn to /healthz 200 and to the cache indexed; stops the server."""
    port = free_port()
    args = [sys.executable, "-m", "console", "serve", "--port", str(port), "--data-dir", str(data_dir)]
    started = time.perf_counter()
    server = Server("fleetdeck", args, FLEETDECK_ENV, REPO)
    url = f"http://127.0.0.1:{port}/healthz"
    try:
        healthz = wait_healthz(url, server, started, lambda body: True)
        indexed = wait_healthz(url, server, started, cache_indexed)
        return {"healthz_s": healthz, "indexed_s": indexed}
    finally:
        server.stop()  # SIGTERM: the cache saves its indexes


def cache_indexed(health: dict[str, Any]) -> bool:
    return bool((health.get("cache") or {}).get("indexed"))


def wait_healthz(url: str, server: Server, started: float, ready: Callable[[dict[str, Any]], bool]) -> float:
    """Seconds from `started` to the first /healthz 200 whose body is `ready` (polled every 20 ms)."""
    deadline = started + 900
    while time.perf_counter() < deadline and server.proc.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200 and ready(json.loads(response.read())):
                    return time.perf_counter() - started
        except OSError:
            pass
        time.sleep(0.02)
    raise RuntimeError(f"serve never answered /healthz: {''.join(server.log[-30:])}")


def run(entries: int, rounds: int) -> dict[str, Any]:
    results: dict[str, list[dict[str, float | None]]] = {"rebuilt": [], "loaded": []}
    with tempfile.TemporaryDirectory(prefix="fleetdeck-start-") as tmp:
        data_dir = Path(tmp) / "data"
        print(f"  filling {entries:,} cache entries …", flush=True)
        make_data_dir(data_dir, entries)
        for i in range(rounds):
            shutil.rmtree(data_dir / "cache-index", ignore_errors=True)
            results["rebuilt"].append(timed_start(data_dir))  # its stop saves the indexes
            results["loaded"].append(timed_start(data_dir))
            print(f"  round {i + 1}: rebuilt {results['rebuilt'][-1]}", flush=True)
            print(f"  round {i + 1}: loaded {results['loaded'][-1]}", flush=True)
    return {"entries": entries, "rounds": rounds, "runs": results, "summary": summarise(results)}


def summarise(results: dict[str, list[dict[str, float | None]]]) -> dict[str, dict[str, float | None]]:
    summary: dict[str, dict[str, float | None]] = {}
    for mode, runs in results.items():
        summary[mode] = {}
        for field in ("healthz_s", "indexed_s"):
            values = [r[field] for r in runs if r[field] is not None]
            summary[mode][field] = statistics.median(values) if values else None
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    result = run(args.entries, args.rounds)
    OUT.mkdir(exist_ok=True)
    (OUT / "start.json").write_text(json.dumps(result, indent=2))
    s = result["summary"]
    print(f"\n{'start':<10}{'healthz s':>12}{'indexed s':>12}")
    for mode in ("rebuilt", "loaded"):
        print(f"{mode:<10}{_f(s[mode]['healthz_s']):>12}{_f(s[mode]['indexed_s']):>12}")


def _f(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


if __name__ == "__main__":
    main()
