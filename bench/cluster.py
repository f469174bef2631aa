"""What cluster mode adds per request: one box vs a replica whose ledger lives in PostgreSQL.

Two `fleetdeck serve` processes run side by side for the whole run, each with its own
data dir, the same policy (bench/gateway.py's: a route cap on every call) and a prod
key with a daily cap, so every call reserves and settles:

- `single`: the default, the ledger in memory;
- `cluster`: `FLEETDECK_CLUSTER` pointing at PostgreSQL (a schema of its own, dropped
  afterwards): each reservation is one round trip to PostgreSQL, each settlement one more
  off the request path, keys and stops synced every 0.25 s.

Both answer from the same mock upstream (bench/mock_upstream.py, 0 ms). Rounds are
interleaved as in bench/gateway.py (the order rotates per cell), closed loop, JSON and
SSE at concurrency 1, 16 and 64: p50/p99 to the last byte and requests per second, and
the ratio cluster / single.

Run: `.venv/bin/python bench/cluster.py [--duration 4] [--quick] [--cluster postgresql://…]`
(default postgresql://postgres@127.0.0.1:5432/test); writes bench/out/cluster.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
from gateway import OUT, LoadGen, Server, Target, fmt, rotated, start_fleetdeck, start_mock

DEFAULT_CLUSTER = "postgresql://postgres@127.0.0.1:5432/test"


@contextlib.contextmanager
def cluster_env(url: str, schema: str) -> Iterator[None]:
    """FLEETDECK_CLUSTER for the child started inside (bench/gateway.py's servers take os.environ)."""
    saved = {name: os.environ.get(name) for name in ("FLEETDECK_CLUSTER", "FLEETDECK_CLUSTER_SCHEMA")}
    os.environ.update({"FLEETDECK_CLUSTER": url, "FLEETDECK_CLUSTER_SCHEMA": schema})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def servers(work: Path, url: str, schema: str) -> Iterator[list[Target]]:
    started: list[Server] = []
    try:
        mock, mock_port = start_mock()
        started.append(mock)
        single, single_url, single_key, _ = start_fleetdeck(mock_port, work, "single")
        started.append(single)
        with cluster_env(url, schema):
            replica, replica_url, replica_key, _ = start_fleetdeck(mock_port, work, "cluster")
        started.append(replica)
        yield [
            Target("single", single_url, {"Authorization": f"Bearer {single_key}"}, "route:bench-", single),
            Target(
                "cluster", replica_url, {"Authorization": f"Bearer {replica_key}"}, "route:bench-", replica
            ),
        ]
    finally:
        for server in reversed(started):
            server.stop()


def rounds(
    gen: LoadGen, targets: list[Target], concurrencies: list[int], duration: float
) -> list[dict[str, Any]]:
    cells, i = [], 0
    for kind in ("json", "sse"):
        for conc in concurrencies:
            cell: dict[str, Any] = {"kind": kind, "concurrency": conc, "results": {}}
            for target in rotated(targets, i):
                spec = {
                    "body": target.body(0, kind == "sse"),
                    "mode": "closed",
                    "concurrency": conc,
                    "duration": duration,
                    "warmup": 0.5,
                }
                r = gen.run(target, spec)
                cell["results"][target.name] = r
                print(
                    f"  {kind:<4} c={conc:<3} {target.name:<8} "
                    f"p50 {fmt(r['p50_ms'])} p99 {fmt(r['p99_ms'])} ms "
                    f"{r['rps']:7.0f} rps  err {sum(r['errors'].values())}",
                    flush=True,
                )
            single, cluster = cell["results"]["single"], cell["results"]["cluster"]
            cell["ratio"] = {
                name: cluster[name] / single[name] if single[name] and cluster[name] else None
                for name in ("p50_ms", "p99_ms", "rps")
            }
            i += 1
            cells.append(cell)
    return cells


def table(cells: list[dict[str, Any]]) -> str:
    lines = [
        "| kind | conc | single p50 / p99 ms | cluster p50 / p99 ms "
        "| single rps | cluster rps | p50 × | rps × |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for c in cells:
        s, k, ratio = c["results"]["single"], c["results"]["cluster"], c["ratio"]
        lines.append(
            f"| {c['kind']} | {c['concurrency']} | {fmt(s['p50_ms'])} / {fmt(s['p99_ms'])} | "
            f"{fmt(k['p50_ms'])} / {fmt(k['p99_ms'])} | {s['rps']:.0f} | {k['rps']:.0f} | "
            f"{fmt(ratio['p50_ms'], 2)} | {fmt(ratio['rps'], 2)} |"
        )
    return "\n".join(lines)


def run(url: str, duration: float, quick: bool) -> dict[str, Any]:
    concurrencies = [1, 16] if quick else [1, 16, 64]
    schema = f"fleetdeck_bench_{secrets.token_hex(4)}"
    started = time.perf_counter()
    try:
        with (
            tempfile.TemporaryDirectory(prefix="fleetdeck-bench-cluster-") as tmp,
            servers(Path(tmp), url, schema) as targets,
        ):
            gen = LoadGen()
            try:
                for t in targets:  # connections, pools and caches warm before anything is measured
                    gen.run(
                        t, {"body": t.body(0, False), "mode": "closed", "concurrency": 4, "duration": 1.0}
                    )
                cells = rounds(gen, targets, concurrencies, duration)
            finally:
                gen.close()
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    return {
        "duration_s": duration,
        "postgresql": url.rsplit("@", 1)[-1],
        "cells": cells,
        "table": table(cells),
        "elapsed_s": time.perf_counter() - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cluster", default=DEFAULT_CLUSTER, help="the PostgreSQL the cluster replica uses")
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per round")
    parser.add_argument("--quick", action="store_true", help="concurrency 1 and 16 only")
    parser.add_argument("--out", type=Path, default=OUT / "cluster.json")
    args = parser.parse_args()
    result = run(args.cluster, args.duration, args.quick)
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(result["table"])
    print(f"wrote {args.out} in {result['elapsed_s']:.0f}s")


if __name__ == "__main__":
    main()
