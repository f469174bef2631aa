"""Live tail: how long after its response a call's row is on the console's Traffic pane.

The real console (`FleetdeckApp`, its gateway embedded on its own thread, as `fleetdeck`
runs it) under Textual's headless driver (`App.run_test()`), the Traffic pane shown, a
mock upstream (bench/mock_upstream.py) in its own process. A client thread sends calls
through the gateway over HTTP one at a time, paced at random (so the calls land at every
phase of the recorder's flush and the pane's timer), and notes when each response was
read to its end. "On screen" is the moment the Traffic table first renders the call's row
(its `render_line`, as the compositor draws a frame), not merely when the row is in its
list. Two modes, in interleaved rounds of one run, each on a fresh store:

- push: the recorder's flushes reach the pane as messages (the default);
- poll: the pane re-queries DuckDB every 0.5 s (`ConsoleOptions(push=False)`, what the
  console did before, and still does without a gateway of its own).

Goal (issue 25): a trace on screen ≤ 1 s after its response.

Run alone: `.venv/bin/python bench/live_tail.py [--calls 100] [--rounds 2]`; writes
bench/out/live_tail.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gateway import FLEETDECK_ENV, FLEETDECK_POLICY, OUT, PROMPT, start_mock

os.environ.update(FLEETDECK_ENV)  # before the console reads secrets: no keyring on a bench box

import httpx

from console.engine import Engine
from console.policy import parse_policy
from console.settings import Settings
from console.tui.app import ConsoleOptions, FleetdeckApp
from console.tui.panes.stream import TraceStream
from console.tui.panes.traffic import TrafficPane

SIZE = (160, 48)
MODES = ("push", "poll")
WAIT_S = 15.0  # a bound on waiting for the last rows, never a measurement


class Seen:
    """The first time each request's row was drawn by the Traffic table (the UI thread writes)."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}
        original = TraceStream.render_line
        seen = self.at

        def render_line(stream: TraceStream, y: int) -> Any:
            strip = original(stream, y)
            index = stream.scroll_offset.y + y - 1
            if y > 0 and 0 <= index < len(stream.rows):
                seen.setdefault(stream.rows[index].request_id, time.perf_counter())
            return strip

        TraceStream.render_line = render_line  # type: ignore[method-assign]


def send_calls(
    url: str, key: str, calls: int, gap_s: float, done: dict[str, float], errors: list[str]
) -> None:
    """On its own thread: one call at a time, a random pause (0–2 × gap) between calls."""
    rng = random.Random(7)
    body = {"model": "route:bench-0ms", "messages": PROMPT, "max_tokens": 64}
    headers = {"Authorization": f"Bearer {key}", "x-fleetdeck-workflow": "live-tail"}
    with httpx.Client(timeout=10) as client:
        for _ in range(calls):
            response = client.post(f"{url}/v1/chat/completions", json=body, headers=headers)
            finished = time.perf_counter()
            if response.status_code != 200:
                errors.append(f"{response.status_code}: {response.text[:200]}")
            else:
                done[response.headers["x-fleetdeck-request-id"]] = finished
            time.sleep(rng.uniform(0, 2 * gap_s))


def one_round(mode: str, mock_port: int, calls: int, gap_s: float, seen: Seen) -> dict[str, Any]:
    policy = parse_policy(FLEETDECK_POLICY.format(port=mock_port))
    with (
        tempfile.TemporaryDirectory(prefix=f"live-tail-{mode}-") as tmp,
        Engine(Settings(data_dir=Path(tmp))) as engine,
    ):
        app = FleetdeckApp(engine, ConsoleOptions(seed=False, policy=policy, port=0, push=mode == "push"))
        done: dict[str, float] = {}
        errors: list[str] = []

        async def play() -> None:
            async with app.run_test(size=SIZE) as pilot:
                while not app.ready:
                    await pilot.pause(0.05)
                await pilot.press("2")
                traffic = app.query_one(TrafficPane)
                while not (traffic.active and traffic.loads):
                    await pilot.pause(0.05)
                url, key = app.context.gateway_url, app.context.dev_key
                assert url and key, "the console's gateway did not start"
                client = threading.Thread(target=send_calls, args=(url, key, calls, gap_s, done, errors))
                client.start()
                while client.is_alive():
                    await pilot.pause(0.05)
                deadline = time.perf_counter() + WAIT_S
                while any(rid not in seen.at for rid in done) and time.perf_counter() < deadline:
                    await pilot.pause(0.05)
                stats["traffic_loads"] = traffic.loads
                stats["traffic_pushes"] = traffic.pushes

        stats: dict[str, Any] = {}
        asyncio.run(play())
    delays = [(seen.at[rid] - t) * 1000 for rid, t in done.items() if rid in seen.at]
    return {
        "mode": mode,
        "calls": calls,
        "answered": len(done),
        "errors": errors[:5],
        "never_shown": sum(rid not in seen.at for rid in done),
        "delays_ms": delays,
        **stats,
    }


def summary(delays: list[float]) -> dict[str, float | int | None]:
    if not delays:
        return {"n": 0, "p50_ms": None, "p95_ms": None, "max_ms": None, "mean_ms": None}
    ordered = sorted(delays)
    return {
        "n": len(ordered),
        "p50_ms": statistics.median(ordered),
        "p95_ms": ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))],
        "max_ms": ordered[-1],
        "mean_ms": statistics.fmean(ordered),
    }


def run(calls: int, rounds: int, gap_s: float) -> dict[str, Any]:
    mock, port = start_mock()
    seen = Seen()
    results: list[dict[str, Any]] = []
    try:
        for number in range(rounds):
            order = MODES if number % 2 == 0 else tuple(reversed(MODES))
            for mode in order:
                result = one_round(mode, port, calls, gap_s, seen)
                s = summary(result["delays_ms"])
                print(
                    f"round {number + 1} {mode}: n={s['n']} p50 {_f(s['p50_ms'])} ms, "
                    f"p95 {_f(s['p95_ms'])} ms, max {_f(s['max_ms'])} ms ({result['traffic_loads']} queries, "
                    f"{result['traffic_pushes']} pushes, {result['never_shown']} never shown)",
                    flush=True,
                )
                results.append(result)
    finally:
        mock.stop()
    by_mode = {
        mode: {
            **summary([d for r in results if r["mode"] == mode for d in r["delays_ms"]]),
            "never_shown": sum(r["never_shown"] for r in results if r["mode"] == mode),
            "errors": sum(len(r["errors"]) for r in results if r["mode"] == mode),
            "traffic_queries": sum(r["traffic_loads"] for r in results if r["mode"] == mode),
        }
        for mode in MODES
    }
    return {
        "calls_per_round": calls,
        "rounds": rounds,
        "gap_s": gap_s,
        "flush_interval_s": Settings().recorder_flush_interval_s,
        "summary": by_mode,
        "rounds_detail": [{k: v for k, v in r.items() if k != "delays_ms"} for r in results],
        "loadavg": Path("/proc/loadavg").read_text().strip(),
    }


def _f(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=100, help="calls per round")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of each mode, interleaved")
    parser.add_argument("--gap", type=float, default=0.1, help="mean pause between calls, seconds")
    args = parser.parse_args()
    result = run(args.calls, args.rounds, args.gap)
    OUT.mkdir(exist_ok=True)
    (OUT / "live_tail.json").write_text(json.dumps(result, indent=2))
    print(f"\n{'mode':<6}{'n':>6}{'p50 ms':>10}{'p95 ms':>10}{'max ms':>10}{'queries':>10}")
    for mode in MODES:
        s = result["summary"][mode]
        print(
            f"{mode:<6}{s['n']:>6}{_f(s['p50_ms']):>10}{_f(s['p95_ms']):>10}{_f(s['max_ms']):>10}"
            f"{s['traffic_queries']:>10}"
        )


if __name__ == "__main__":
    main()
