"""The OTLP export and the request path: the gateway with export off, on, and on with its
collector down, side by side.

Three `fleetdeck serve` processes on one mock upstream (bench/mock_upstream.py) with the
policy of bench/gateway.py, but for `otlp:`:

- *off* exports nothing (no endpoint);
- *on* exports every call as a span, and the two client metrics every second, to an
  OTLP/HTTP sink in this process that decodes what it is sent and counts the spans;
- *down* exports to a closed port (timeout 1 s): every batch fails and is counted as
  dropped.

For each concurrency each instance gets `--requests` requests in interleaved blocks
(the order rotating), as bench/judge.py does. Latency p50/p95/p99 per instance, with
on ÷ off and down ÷ off, the off instance's block spread as the noise band, CPU seconds
per 1,000 requests of each serving process, and the export's counters from /healthz
(spans received by the sink ÷ calls made).

Run alone: `.venv/bin/python bench/otlp.py [--requests 2000] [--block 250]`; writes
bench/out/otlp.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from aiohttp import web
from gateway import OUT, LoadGen, Server, Target, rotated, start_fleetdeck, start_mock
from judge import latency
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

NAMES = ("off", "on", "down")


class Sink:
    """An OTLP/HTTP receiver that counts the spans it is sent (metrics are taken and ignored)."""

    def __init__(self) -> None:
        self.spans = 0
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._ready = threading.Event()
        threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True).start()
        self._ready.wait(10)

    async def _serve(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/traces", self._traces)
        app.router.add_post("/v1/metrics", lambda request: self._ok(request, b""))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.SockSite(runner, self._sock).start()
        self._ready.set()
        await asyncio.Event().wait()

    async def _traces(self, request: web.Request) -> web.Response:
        message = ExportTraceServiceRequest.FromString(await request.read())
        self.spans += sum(len(ss.spans) for rs in message.resource_spans for ss in rs.scope_spans)
        return await self._ok(request, ExportTraceServiceResponse().SerializeToString())

    async def _ok(self, request: web.Request, body: bytes) -> web.Response:
        await request.read()
        return web.Response(body=body, content_type="application/x-protobuf")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def otlp_stats(target: Target) -> dict[str, Any] | None:
    found: dict[str, Any] | None = httpx.get(f"{target.url}/healthz", timeout=10).json()["otlp"]
    return found


def level(gen: LoadGen, targets: list[Target], concurrency: int, requests: int, block: int) -> dict[str, Any]:
    runs: dict[str, dict[str, Any]] = {
        t.name: {"lat": [], "blocks": [], "errors": 0, "cpu": 0.0, "n": 0} for t in targets
    }
    for i in range(requests // block):
        for target in rotated(targets, i):
            spec = {
                "body": target.body(0, False),
                "mode": "closed",
                "concurrency": concurrency,
                "requests": block,
                "raw": True,
            }
            r = gen.run(target, spec)
            kept = runs[target.name]
            kept["lat"] += r["latencies_ms"]
            kept["blocks"].append(latency(r["latencies_ms"]))
            kept["errors"] += sum(r["errors"].values())
            kept["cpu"] += r["server_cpu_s"]
            kept["n"] += r["completed"]
            print(
                f"  c={concurrency:<3} block {i + 1} {target.name:<4} "
                f"p50 {r['p50_ms']:.2f} p99 {r['p99_ms']:.2f} ms",
                flush=True,
            )
    result: dict[str, Any] = {"concurrency": concurrency}
    for name, kept in runs.items():
        cpu_per_1k = kept["cpu"] / kept["n"] * 1000 if kept["n"] else None
        result[name] = {
            **latency(kept["lat"]),
            "errors": kept["errors"],
            "cpu_s_per_1k": cpu_per_1k,
            "blocks": kept["blocks"],
        }
    for name in ("on", "down"):
        result[f"{name}_over_off"] = {
            p: result[name][p] / result["off"][p]
            for p in ("p50_ms", "p95_ms", "p99_ms", "cpu_s_per_1k")
            if result["off"][p]
        }
    off_blocks = runs["off"]["blocks"]
    result["noise"] = {
        p: [min(b[p] for b in off_blocks), max(b[p] for b in off_blocks)] for p in ("p50_ms", "p99_ms")
    }
    return result


def run(requests: int, block: int, concurrencies: list[int]) -> dict[str, Any]:
    started = time.perf_counter()
    sink = Sink()
    servers: list[Server] = []
    otlp = {
        "off": "",
        "on": f'otlp: {{endpoint: "{sink.url}", metrics_interval_s: 1}}\n',
        "down": f'otlp: {{endpoint: "http://127.0.0.1:{closed_port()}", timeout_s: 1}}\n',
    }
    with tempfile.TemporaryDirectory(prefix="fleetdeck-otlp-bench-") as tmp:
        try:
            mock, port = start_mock()
            servers.append(mock)
            targets = []
            for name in NAMES:
                server, url, key, _ = start_fleetdeck(port, Path(tmp), f"otlp-{name}", otlp[name])
                servers.append(server)
                targets.append(Target(name, url, {"Authorization": f"Bearer {key}"}, "route:bench-", server))
            gen = LoadGen()
            try:
                for target in targets:
                    gen.run(
                        target,
                        {"body": target.body(0, False), "mode": "closed", "concurrency": 4, "duration": 1},
                    )
                load_before = " ".join(Path("/proc/loadavg").read_text().split()[:3])
                levels = [level(gen, targets, c, requests, block) for c in concurrencies]
                load_after = " ".join(Path("/proc/loadavg").read_text().split()[:3])
            finally:
                gen.close()
            on, down = targets[1], targets[2]
            deadline = time.monotonic() + 60
            while (otlp_stats(on) or {}).get("queued") and time.monotonic() < deadline:
                time.sleep(0.2)  # the last batches on their way (a bench may wait on the clock)
            export = {"on": otlp_stats(on), "down": otlp_stats(down), "sink_spans": sink.spans}
        finally:
            for server in reversed(servers):
                server.stop()
    return {
        "requests": requests,
        "block": block,
        "levels": levels,
        "export": export,
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
    parser.add_argument("--out", type=Path, default=OUT / "otlp.json")
    args = parser.parse_args()
    result = run(args.requests, args.block, args.concurrency)
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    for lv in result["levels"]:
        for figure in ("p50_ms", "p99_ms", "cpu_s_per_1k"):
            shown = ", ".join(f"{name} {lv[name][figure]:.2f}" for name in NAMES)
            print(f"c={lv['concurrency']} {figure}: {shown}")
    print(f"export: {result['export']}")
    print(f"wrote {args.out} in {result['elapsed_s']:.0f}s")


if __name__ == "__main__":
    main()
