"""The judge and the request path: the gateway with the judge off vs on (5 %), side by side.

Two `fleetdeck serve` processes on one mock upstream (bench/mock_upstream.py) with the
policy of bench/gateway.py, and the same prod key setup, but for `eval:`:

- *off* judges nothing (`sample_rate: 0`);
- *on* samples 5 % of the served calls and has them judged by `mock/mock-judge-50ms`
  (a JSON verdict after 50 ms, as a remote judge would answer), four judge calls at a
  time: sampling, the queue, the judge calls through the pipeline, their traces and the
  `evals` rows all run on the gateway's loop next to the measured requests.

For each concurrency (1 and 16) each instance gets 2,000 requests (workflow `bench`), in
blocks of 250 alternating off / on with the order rotating, so load from elsewhere on
the box hits both alike. Latency p50/p95/p99 over each instance's 2,000, with on ÷ off;
the noise band is the spread of the block p50 and p99 of the *off* instance. CPU
seconds per 1,000 requests of each serving process (from /proc, as in bench/gateway.py)
measure what the judge costs the gateway's process, judge calls included. Then,
once the judge has drained its queue, the judged share of those 2,000: verdicts ÷
served calls, from the instance's own counters (healthz), and over the whole run from
its store (evals ÷ served prod calls, warm-up included).

Run alone: `.venv/bin/python bench/judge.py [--requests 2000] [--block 500]`; writes
bench/out/judge.json. bench/run.py runs it as part of `make bench`.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from gateway import OUT, LoadGen, Server, Target, rotated, start_fleetdeck, start_mock

SAMPLE_RATE = 0.05
EVAL_OFF = "eval: {sample_rate: 0}\n"
EVAL_ON = f"eval: {{sample_rate: {SAMPLE_RATE}, judge: mock/mock-judge-50ms, concurrency: 4}}\n"
WORKFLOW = "bench"


def percentile(ordered: list[float], q: float) -> float | None:
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else None


def latency(latencies: list[float]) -> dict[str, Any]:
    ordered = sorted(latencies)
    return {
        "n": len(ordered),
        "p50_ms": percentile(ordered, 0.5),
        "p95_ms": percentile(ordered, 0.95),
        "p99_ms": percentile(ordered, 0.99),
    }


def evaluator(target: Target) -> dict[str, Any]:
    stats: dict[str, Any] = httpx.get(f"{target.url}/healthz", timeout=10).json()["evaluator"]
    return stats


def drained(target: Target, timeout_s: float = 120) -> dict[str, Any]:
    """The judge's counters once every sampled call is judged, failed or dropped."""
    deadline = time.monotonic() + timeout_s
    while True:
        stats = evaluator(target)
        done = stats["judged"] + stats["unparseable"] + stats["failed"] + stats["dropped"]
        if done == stats["sampled"] or time.monotonic() > deadline:
            return stats
        time.sleep(0.1)


def level(
    gen: LoadGen, off: Target, on: Target, concurrency: int, requests: int, block: int
) -> dict[str, Any]:
    before = drained(on)
    latencies: dict[str, list[float]] = {"off": [], "on": []}
    blocks: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
    errors: dict[str, int] = {"off": 0, "on": 0}
    cpu: dict[str, list[float]] = {"off": [0.0, 0.0], "on": [0.0, 0.0]}  # server CPU s, requests
    for i in range(requests // block):
        for target in rotated([off, on], i):
            spec = {
                "body": target.body(0, False),
                "mode": "closed",
                "concurrency": concurrency,
                "requests": block,
                "raw": True,
            }
            r = gen.run(target, spec)
            latencies[target.name] += r["latencies_ms"]
            blocks[target.name].append(latency(r["latencies_ms"]))
            errors[target.name] += sum(r["errors"].values())
            cpu[target.name][0] += r["server_cpu_s"]
            cpu[target.name][1] += r["completed"]
            print(
                f"  c={concurrency:<3} block {i + 1} {target.name:<3} p50 {r['p50_ms']:.2f} "
                f"p99 {r['p99_ms']:.2f} ms  {r['rps']:6.0f} rps",
                flush=True,
            )
    after = drained(on)
    counts = {
        k: after[k] - before[k] for k in ("eligible", "sampled", "judged", "unparseable", "dropped", "failed")
    }
    result: dict[str, Any] = {"concurrency": concurrency, "judge": counts}
    for name in ("off", "on"):
        result[name] = {**latency(latencies[name]), "errors": errors[name], "blocks": blocks[name]}
        result[name]["cpu_s_per_1k"] = cpu[name][0] / cpu[name][1] * 1000 if cpu[name][1] else None
    result["ratio"] = {
        p: result["on"][p] / result["off"][p]
        for p in ("p50_ms", "p95_ms", "p99_ms", "cpu_s_per_1k")
        if result["off"][p]
    }
    result["noise"] = {
        p: [min(b[p] for b in blocks["off"]), max(b[p] for b in blocks["off"])] for p in ("p50_ms", "p99_ms")
    }
    counts["share"] = counts["judged"] / counts["eligible"] if counts["eligible"] else None
    return result


def store_share(data_dir: Path) -> dict[str, Any]:
    from console.gateway.admin import AdminEndpoint

    endpoint = AdminEndpoint.find(data_dir)
    assert endpoint is not None
    sql = (
        "SELECT (SELECT count(*) FROM traces WHERE workflow_id = 'bench' AND status IN ('ok', 'partial') "
        "AND environment = 'prod') AS served, (SELECT count(*) FROM evals) AS verdicts, "
        "(SELECT count(*) FROM traces WHERE workflow_id = 'fleetdeck-judge') AS judge_calls, "
        "(SELECT sum(judge_cost_usd) FROM evals) AS judge_cost_usd"
    )
    time.sleep(0.5)  # the recorder's last batch
    (row,) = endpoint.query({"sql": sql}).to_pylist()
    row["share"] = row["verdicts"] / row["served"] if row["served"] else None
    return dict(row)


def run(requests: int, block: int, concurrencies: list[int]) -> dict[str, Any]:
    started = time.perf_counter()
    servers: list[Server] = []
    with tempfile.TemporaryDirectory(prefix="fleetdeck-judge-bench-") as tmp:
        try:
            mock, port = start_mock()
            servers.append(mock)
            targets = []
            for name, evaluation in (("off", EVAL_OFF), ("on", EVAL_ON)):
                server, url, key, data_dir = start_fleetdeck(port, Path(tmp), f"judge-{name}", evaluation)
                servers.append(server)
                headers = {"Authorization": f"Bearer {key}", "X-Fleetdeck-Workflow": WORKFLOW}
                targets.append((Target(name, url, headers, "route:bench-", server), data_dir))
            (off, _), (on, on_data) = targets
            gen = LoadGen()
            try:
                for target in (off, on):
                    gen.run(
                        target,
                        {"body": target.body(0, False), "mode": "closed", "concurrency": 4, "duration": 1},
                    )
                load_before = " ".join(Path("/proc/loadavg").read_text().split()[:3])
                levels = [level(gen, off, on, c, requests, block) for c in concurrencies]
                load_after = " ".join(Path("/proc/loadavg").read_text().split()[:3])
            finally:
                gen.close()
            store = store_share(on_data)
        finally:
            for server in reversed(servers):
                server.stop()
    return {
        "sample_rate": SAMPLE_RATE,
        "requests": requests,
        "block": block,
        "judge": "mock/mock-judge-50ms, concurrency 4",
        "levels": levels,
        "store": store,
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        "elapsed_s": time.perf_counter() - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=2000, help="per instance and concurrency")
    parser.add_argument("--block", type=int, default=250, help="requests per interleaved block")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--out", type=Path, default=OUT / "judge.json")
    args = parser.parse_args()
    result = run(args.requests, args.block, args.concurrency)
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    for lv in result["levels"]:
        off, on, share = lv["off"], lv["on"], lv["judge"]
        print(
            f"c={lv['concurrency']}: p50 {off['p50_ms']:.2f} → {on['p50_ms']:.2f} ms, "
            f"p99 {off['p99_ms']:.2f} → {on['p99_ms']:.2f} ms; judged {share['judged']}/{share['eligible']}"
        )
    print(f"wrote {args.out} in {result['elapsed_s']:.0f}s")


if __name__ == "__main__":
    main()
