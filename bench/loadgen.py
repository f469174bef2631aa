"""Load generator for the gateway bench: asyncio + aiohttp client, closed and open loop.

It runs as a long-lived child process so that its CPU is not the orchestrator's and
its import cost is paid once: the orchestrator writes one JSON round spec per line on
stdin and reads one JSON result per line on stdout.

A round spec: `{"url", "headers", "body", "stream", "mode": "closed"|"open",
"concurrency", "rate", "duration", "warmup"}`; a closed round may give `requests` (a
count) instead of `duration`, and `raw: true` returns every latency too.

- closed loop: `concurrency` workers, each sending its next request when the last one
  is done; a request counts when it ends inside the measured window (after the
  warm-up), so throughput stays right when a request takes longer than the window.
- open loop: requests start on a fixed schedule (`rate` per second) whatever happens to
  earlier ones; latency is measured from the scheduled start, so a gateway that falls
  behind is charged for the queue it builds (no coordinated omission).

Latency is to the last byte with the JSON parsed: the whole body for JSON, every
`data:` event up to `[DONE]` for streams (and `ttft`, to the first event).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import Any

import aiohttp
import orjson

TIMEOUT = aiohttp.ClientTimeout(total=15)


class Round:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.url: str = spec["url"]
        self.headers: dict[str, str] = {"Content-Type": "application/json", **spec.get("headers", {})}
        self.body: bytes = orjson.dumps(spec["body"])
        self.stream: bool = bool(spec["body"].get("stream"))
        self.latencies: list[float] = []
        self.ttfts: list[float] = []
        self.errors: dict[str, int] = {}
        self.completed = 0  # every answered request, warm-up included: the denominator of CPU per request

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    async def one(self, session: aiohttp.ClientSession, t0: float, window: tuple[float, float]) -> None:
        """One request from `t0`; counted when it ends inside `window` (start, end: perf_counter)."""
        counted = t0 >= window[0]  # errors of warm-up requests are not counted
        try:
            async with session.post(self.url, data=self.body, headers=self.headers) as resp:
                if resp.status != 200:
                    await resp.read()
                    if counted:
                        self.error(f"http_{resp.status}")
                    return
                if not self.stream:
                    answer = orjson.loads(await resp.read())
                    ok = bool(answer.get("choices"))
                    first = None
                else:
                    first, ok = await self._read_stream(resp)
        except (aiohttp.ClientError, TimeoutError, OSError, orjson.JSONDecodeError) as exc:
            if counted:
                self.error(type(exc).__name__)
            return
        done = time.perf_counter()
        self.completed += 1
        if not window[0] <= done <= window[1]:
            return
        if not ok:
            self.error("bad_body")
            return
        self.latencies.append((done - t0) * 1000)
        if first is not None:
            self.ttfts.append((first - t0) * 1000)

    @staticmethod
    async def _read_stream(resp: aiohttp.ClientResponse) -> tuple[float | None, bool]:
        first = None
        async for line in resp.content:
            if not line.startswith(b"data: "):
                continue
            if first is None:
                first = time.perf_counter()
            payload = line[6:].strip()
            if payload == b"[DONE]":
                await resp.content.read()  # drain the chunked trailer so the connection is reused
                return first, True
            event = orjson.loads(payload)
            if "error" in event:
                return first, False
        return first, False

    def summary(self, elapsed: float) -> dict[str, Any]:
        lat = sorted(self.latencies)
        out: dict[str, Any] = {
            "ok": len(lat),
            "completed": self.completed,
            "errors": self.errors,
            "elapsed_s": elapsed,
            "rps": len(lat) / elapsed if elapsed > 0 else 0.0,
            **percentiles(lat, ""),
        }
        if self.ttfts:
            out |= percentiles(sorted(self.ttfts), "ttft_")
        return out


def percentiles(ordered: list[float], prefix: str) -> dict[str, float | None]:
    if not ordered:
        return {f"{prefix}p50_ms": None, f"{prefix}p90_ms": None, f"{prefix}p99_ms": None}

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    return {
        f"{prefix}p50_ms": at(0.5),
        f"{prefix}p90_ms": at(0.9),
        f"{prefix}p99_ms": at(0.99),
        f"{prefix}mean_ms": sum(ordered) / len(ordered),
    }


async def closed_loop(spec: dict[str, Any]) -> dict[str, Any]:
    """For `duration` seconds after a warm-up, or, given `requests`, for that many requests, all measured."""
    run = Round(spec)
    concurrency = int(spec["concurrency"])
    limit = spec.get("requests")
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False, ttl_dns_cache=None)
    async with aiohttp.ClientSession(connector=connector, timeout=TIMEOUT) as session:
        start = time.perf_counter()
        if limit is None:
            measure_from = start + float(spec.get("warmup", 0.5))
            stop_at = measure_from + float(spec["duration"])
        else:
            measure_from, stop_at = start, float("inf")
        sent = 0

        async def worker() -> None:
            nonlocal sent
            while (t0 := time.perf_counter()) < stop_at and (limit is None or sent < limit):
                sent += 1
                await run.one(session, t0, (measure_from, stop_at))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    ended = stop_at if limit is None else time.perf_counter()
    result = run.summary(ended - measure_from)
    if spec.get("raw"):
        result["latencies_ms"] = run.latencies
    return result


async def open_loop(spec: dict[str, Any]) -> dict[str, Any]:
    run = Round(spec)
    rate = float(spec["rate"])
    connector = aiohttp.TCPConnector(limit=int(spec.get("max_connections", 1024)), ttl_dns_cache=None)
    async with aiohttp.ClientSession(connector=connector, timeout=TIMEOUT) as session:
        warmup = float(spec.get("warmup", 0.5))
        total = int(rate * (warmup + float(spec["duration"])))
        skip = int(rate * warmup)
        start = time.perf_counter() + 0.01
        tasks = []
        for i in range(total):
            due = start + i / rate
            wait = due - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            window = (0.0, float("inf")) if i >= skip else (float("inf"), float("inf"))
            tasks.append(asyncio.create_task(run.one(session, due, window)))
        measure_from = start + skip / rate
        scheduled_end = start + total / rate
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=TIMEOUT.total)
            for task in pending:
                task.cancel()
            if pending:
                run.error("not_finished")
        elapsed = max(scheduled_end, time.perf_counter()) - measure_from
    result = run.summary(elapsed)
    result["target_rps"] = rate
    result["late_start_ms"] = max(0.0, (time.perf_counter() - scheduled_end) * 1000)
    return result


async def serve() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        spec = orjson.loads(line)
        cpu0 = os.times()
        if spec["mode"] == "closed":
            result = await closed_loop(spec)
        else:
            result = await open_loop(spec)
        cpu1 = os.times()
        result["loadgen_cpu_s"] = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
        sys.stdout.write(orjson.dumps(result).decode() + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    asyncio.run(serve())
