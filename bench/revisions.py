"""Fleetdeck at two revisions side by side: CPU per 1,000 gateway requests, JSON and SSE.

For a change that must not cost speed (a refactor), run the revision before it and the
working tree as two `fleetdeck serve` processes on the same mock upstream (bench/gateway.py's
setup: keys, routing, the budget ledger, pricing and tracing on every call), in interleaved
rounds whose order rotates, so load from elsewhere on the box hits both alike. Prints, per
cell (JSON/SSE × concurrency), the median CPU seconds per 1,000 requests of each, the ratio,
and the spread of the base revision's own rounds: the noise band a ratio must leave to mean
anything. Also p50/p99 latency.

Run: `.venv/bin/python bench/revisions.py --base <rev> [--rounds 5] [--duration 4]`
(the base revision is exported with `git archive` into a temporary directory).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from gateway import OUT, REPO, LoadGen, Target, fmt, rotated, start_fleetdeck, start_mock

CELLS = [("json", 1), ("json", 16), ("sse", 1), ("sse", 16)]


def export_revision(rev: str, into: Path) -> Path:
    archive = subprocess.run(["git", "archive", rev], cwd=REPO, capture_output=True, check=True).stdout
    tar = into / "rev.tar"
    tar.write_bytes(archive)
    with tarfile.open(tar) as t:
        t.extractall(into / "tree", filter="data")
    return into / "tree"


def run(base: str, rounds: int, duration: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="fd-revisions-") as tmp:
        work = Path(tmp)
        base_tree = export_revision(base, work)
        mock, mock_port = start_mock()
        servers = []
        try:
            targets = []
            for name, source in ((f"base {base[:8]}", base_tree), ("head", REPO)):
                server, url, key, _ = start_fleetdeck(mock_port, work, name.replace(" ", "-"), source=source)
                servers.append(server)
                auth = {"Authorization": f"Bearer {key}"}
                targets.append(Target(name, url, auth, "route:bench-", server))
            gen = LoadGen()
            results: dict[str, dict[str, list[dict[str, Any]]]] = {}
            for i in range(rounds * len(CELLS)):
                kind, conc = CELLS[i % len(CELLS)]
                cell = results.setdefault(f"{kind} c={conc}", {t.name: [] for t in targets})
                for target in rotated(targets, i // len(CELLS) + i):
                    spec = {"body": target.body(0, kind == "sse"), "mode": "closed"}
                    spec |= {"concurrency": conc, "duration": duration, "warmup": 0.5}
                    cell[target.name].append(gen.run(target, spec))
                print(f"  round {i // len(CELLS) + 1}/{rounds} {kind} c={conc} done", flush=True)
            gen.close()
        finally:
            for server in servers:
                server.stop()
            mock.stop()
    return {"base": base, "rounds": rounds, "duration_s": duration, "cells": results}


def report(doc: dict[str, Any]) -> None:
    names = list(next(iter(doc["cells"].values())))
    base, head = names
    print(f"\nCPU s per 1,000 requests (median of {doc['rounds']} rounds), {base} vs {head}")
    print(f"{'cell':<10} {'base':>7} {'head':>7} {'head/base':>9}  {'base band':>13}  p50 base/head ms  p99")
    for cell, by_name in doc["cells"].items():
        cpu = {n: [r["cpu_s_per_1k"] for r in rs if r["cpu_s_per_1k"]] for n, rs in by_name.items()}
        p50 = {n: statistics.median(r["p50_ms"] for r in rs) for n, rs in by_name.items()}
        p99 = {n: statistics.median(r["p99_ms"] for r in rs) for n, rs in by_name.items()}
        b, h = statistics.median(cpu[base]), statistics.median(cpu[head])
        band = f"{min(cpu[base]):.3f}–{max(cpu[base]):.3f}"
        print(
            f"{cell:<10} {b:7.3f} {h:7.3f} {h / b:9.3f}  {band:>13}  "
            f"{fmt(p50[base])}/{fmt(p50[head])}  {fmt(p99[base])}/{fmt(p99[head])}"
        )


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--base", required=True, help="the revision to compare the working tree with")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per round")
    parser.add_argument("--out", type=Path, default=OUT / "revisions.json")
    args = parser.parse_args()
    doc = run(args.base, args.rounds, args.duration)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1))
    report(doc)


if __name__ == "__main__":
    main()
