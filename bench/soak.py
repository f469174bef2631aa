"""`make soak`: crash and fault drills under mixed traffic against a real `fleetdeck serve`.

Not part of `make test`: a bounded run (about 10 minutes on 2 cores) that prints one table,
each drill repeated and counted, with the target it is held to (docs/reliability.md).

    PYTHONPATH=. .venv/bin/python bench/soak.py            # the full run
    PYTHONPATH=. .venv/bin/python bench/soak.py --quick    # every drill, small counts
    PYTHONPATH=. .venv/bin/python bench/soak.py --only kill,stream --kills 3

Traffic is mixed over the wire protocols the gateway serves: Chat Completions, Responses and
Messages, streamed and not, and embeddings. Upstreams are tests/fakes/openai_upstream.py's
`FakeOpenAI` (real HTTP servers on 127.0.0.1 with injectable faults); the gateway is a real
`fleetdeck serve` child started by tests/gateway_process.py.

Drills (counts from flags, or SOAK_<FLAG> in the environment):

- kill:    SIGKILL of `fleetdeck serve` under load, `--kills` times; every acknowledged trace
           (a 200 answer, a stream's clean end) and every acknowledged audit entry (a call
           refused by the PII guard, which audits it) is stored exactly once after restart;
           `fleetdeck audit verify` passes.
- breaker: a primary answering a 503 storm, another one stalling: `--storm-calls` calls each,
           the share served by the fallback, failures before ejection, calls the primary got
           while ejected.
- retries: an upstream outage on a route without fallback: upstream calls per client call;
           `Retry-After` honoured; no retry of a 4xx, no upstream call for a guard refusal.
- stream:  `--streams` streams stalled or cut mid-way: the protocol's error event within the
           idle timeout + 1 s, never a clean end; the serve process's open file descriptors
           back to their baseline afterwards.
- disk:    the filesystem holding the data dir (spool and DuckDB) fills up under load (a small
           tmpfs the drill mounts; needs root), then space returns: every acknowledged call is
           stored exactly once; refusals while full carry a clear error.
- held:    the DuckDB file held by another process at start: `fleetdeck serve` exits with an
           error naming the holder's PID, and the store is intact afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import logging
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# The stalling fake answers after the gateway has given up on it: aiohttp's tracebacks about
# the closed connection are expected noise here.
logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
sys.path.insert(0, str(REPO / "tests"))
# Like the tests: no user keyring, a config dir of the run's own (children inherit both).
os.environ.setdefault("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
os.environ.setdefault("FLEETDECK_CONFIG_DIR", tempfile.mkdtemp(prefix="fleetdeck-soak-config-"))

import httpx  # noqa: E402
import orjson  # noqa: E402
import pyarrow as pa  # noqa: E402
from fakes.openai_upstream import FakeOpenAI, Fault  # noqa: E402
from gateway_process import Served, fleetdeck_serve, run_cli  # noqa: E402

from console.engine import Engine  # noqa: E402
from console.settings import Settings  # noqa: E402

PRICES = "prices: {mock-gpt: {input: 1.0, output: 2.0}}"
TEXT = "please summarise the quarterly report for the operations team in a few words today"
PII_TEXT = "write to jane.doe@example.com about invoice 4471"
KINDS: tuple[tuple[str, bool], ...] = (
    ("chat", False),
    ("chat", True),
    ("responses", False),
    ("responses", True),
    ("messages", False),
    ("messages", True),
    ("embeddings", False),
)
STREAM_KINDS = tuple(k for k in KINDS if k[1])
CLEAN_END = {"chat": "[DONE]", "responses": "response.completed", "messages": "message_stop"}


# --------------------------------------------------------------------------- one call


@dataclass
class Result:
    kind: str
    stream: bool
    status: int = 0  # 0: no HTTP answer (connection refused or broken)
    request_id: str | None = None
    model: str | None = None  # X-Fleetdeck-Model
    clean: bool = False  # a JSON answer parsed, or a stream's clean end
    error_event: bool = False  # a stream's error event
    error_gap_s: float | None = None  # from the event before it to the error event
    error: str = ""  # what went wrong, for the table's notes
    started: float = 0.0
    ended: float = 0.0

    @property
    def acked(self) -> bool:
        return self.status == 200 and self.clean


def request_of(kind: str, stream: bool, model: str, text: str = TEXT) -> tuple[str, dict[str, Any]]:
    if kind == "chat":
        body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": text}]}
        return "/v1/chat/completions", {**body, "max_tokens": 32, "stream": stream}
    if kind == "responses":
        return "/v1/responses", {"model": model, "input": text, "max_output_tokens": 32, "stream": stream}
    if kind == "messages":
        body = {"model": model, "max_tokens": 32, "messages": [{"role": "user", "content": text}]}
        return "/v1/messages", {**body, "stream": stream}
    return "/v1/embeddings", {"model": model, "input": text}


def call(
    client: httpx.Client, served: Served, kind: str, stream: bool, model: str, text: str = TEXT
) -> Result:
    path, body = request_of(kind, stream, model, text)
    headers = {**served.auth, "anthropic-version": "2023-06-01"}
    result = Result(kind, stream, started=time.monotonic())
    try:
        if not stream:
            response = client.post(served.url + path, json=body, headers=headers)
            result.status = response.status_code
            result.request_id = response.headers.get("x-fleetdeck-request-id")
            result.model = response.headers.get("x-fleetdeck-model")
            if response.status_code == 200:
                orjson.loads(response.content)
                result.clean = True
            else:
                result.error = _error_text(response.content)
        else:
            with client.stream("POST", served.url + path, json=body, headers=headers) as response:
                result.status = response.status_code
                result.request_id = response.headers.get("x-fleetdeck-request-id")
                result.model = response.headers.get("x-fleetdeck-model")
                if response.status_code != 200:
                    result.error = _error_text(response.read())
                else:
                    _read_stream(response, kind, result)
    except (httpx.HTTPError, orjson.JSONDecodeError) as exc:
        result.error = type(exc).__name__
    result.ended = time.monotonic()
    return result


def _error_text(raw: bytes) -> str:
    with contextlib.suppress(orjson.JSONDecodeError, AttributeError, TypeError):
        error = orjson.loads(raw)["error"]
        return str(error.get("code") or error.get("type") or "") + ": " + str(error.get("message"))[:120]
    return raw[:120].decode(errors="replace")


def _read_stream(response: httpx.Response, kind: str, result: Result) -> None:
    """Read SSE events until the end: the clean end, or the protocol's error event."""
    last = time.monotonic()
    event = None
    for line in response.iter_lines():
        now = time.monotonic()
        if line.startswith("event: "):
            event = line[7:]
            continue
        if not line.startswith("data: "):
            continue
        data = line[6:]
        name = event or ""
        event = None
        if kind == "chat":
            if data == "[DONE]":
                result.clean = True
            elif data.startswith('{"error"'):
                name = "error"
        elif name == CLEAN_END[kind]:
            result.clean = True
        if name in ("error", "response.failed") and not result.error_event:
            result.error_event, result.error_gap_s = True, now - last
            result.error = "stream error event"
        last = now


class Traffic:
    """Worker threads sending mixed calls until stopped; every result kept."""

    def __init__(self, workers: int, model: str = "route:mixed", pii_every: int = 10) -> None:
        self.workers, self.model, self.pii_every = workers, model, pii_every
        self.results: list[Result] = []
        self.pii: list[Result] = []  # calls the PII guard refuses (each audited)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @contextlib.contextmanager
    def running(self, served: Served) -> Iterator[None]:
        self._stop.clear()
        self._threads = [
            threading.Thread(target=self._work, args=(served, n), daemon=True) for n in range(self.workers)
        ]
        for thread in self._threads:
            thread.start()
        try:
            yield
        finally:
            self._stop.set()
            for thread in self._threads:
                thread.join(60)

    def wait_for_answers(self, n: int, timeout_s: float = 60, acked: bool = False) -> int:
        """Until `n` more calls have been answered (acknowledged, with `acked`); how many were."""

        def count() -> int:
            return sum(1 for r in self.results if r.acked) if acked else len(self.results)

        start = count()
        deadline = time.monotonic() + timeout_s
        while count() < start + n and time.monotonic() < deadline:
            time.sleep(0.05)
        return count() - start

    def _work(self, served: Served, worker: int) -> None:
        kinds = itertools.cycle(KINDS[worker % len(KINDS) :] + KINDS[: worker % len(KINDS)])
        with httpx.Client(timeout=30) as client:
            for n in itertools.count():
                if self._stop.is_set():
                    return
                if self.pii_every and n % self.pii_every == self.pii_every - 1:
                    result = call(client, served, "chat", False, "route:guarded", PII_TEXT)
                    with self._lock:
                        self.pii.append(result)
                    continue
                kind, stream = next(kinds)
                result = call(client, served, kind, stream, self.model)
                with self._lock:
                    self.results.append(result)


# --------------------------------------------------------------------------- the table


@dataclass
class Row:
    drill: str
    runs: str
    measured: str
    target: str
    ok: bool
    notes: list[str] = field(default_factory=list)


ROWS: list[Row] = []


def row(drill: str, runs: object, measured: str, target: str, ok: bool, *notes: str) -> None:
    ROWS.append(Row(drill, str(runs), measured, target, ok, [n for n in notes if n]))
    print(f"  {'PASS' if ok else 'FAIL'}  {drill}: {measured} (target {target})", flush=True)


def print_table(elapsed_s: float, args: argparse.Namespace) -> None:
    headers = ("drill", "runs", "measured", "target", "result")
    cells = [(r.drill, r.runs, r.measured, r.target, "pass" if r.ok else "FAIL") for r in ROWS]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    print()
    print(
        f"fleetdeck soak, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores, "
        f"{elapsed_s / 60:.1f} min"
    )
    print(line)
    print("  ".join("-" * w for w in widths))
    for c in cells:
        print("  ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)))
    notes = [f"{r.drill}: {n}" for r in ROWS for n in r.notes]
    if notes:
        print()
        for note in notes:
            print(f"  note: {note}")
    counts = ", ".join(f"{k}={v}" for k, v in sorted(vars(args).items()) if k != "only")
    print(f"\ncounts: {counts}")


# --------------------------------------------------------------------------- helpers


def policy(routes: str, providers: dict[str, FakeOpenAI], extra: str = "") -> str:
    lines = ["providers:"]
    for name, fake in providers.items():
        lines.append(f"  {name}: {{kind: openai_compat, base_url: '{fake.base_url}', {PRICES}}}")
    return "\n".join(lines) + "\nroutes:\n" + routes + extra


def mixed_routes(provider: str) -> str:
    return (
        f"  - {{intent: mixed, primary: {provider}/mock-gpt, max_retries: 1, timeouts: {{total_s: 20}}}}\n"
        f"  - {{intent: guarded, primary: {provider}/mock-gpt, pii: block, max_retries: 0}}\n"
    )


def stored(data_dir: Path, sql: str, ids: list[str]) -> list[tuple[Any, ...]]:
    """Rows of `sql` over the stopped instance's store, with `acked(id)` registered."""
    with Engine(Settings(data_dir=data_dir)) as engine:
        cur = engine.db.cursor()
        cur.register("acked", pa.table({"id": pa.array(ids, pa.string())}))
        return cur.execute(sql).fetchall()


def exactly_once(data_dir: Path, ids: list[str], audit: bool = False) -> tuple[int, int]:
    """(missing, duplicated) among `ids`, in traces (or the audit log's subjects)."""
    table, column = ("audit_log", "subject") if audit else ("traces", "request_id")
    where = " AND action = 'guard.blocked'" if audit else ""
    sql = (
        f"SELECT count(*) FILTER (WHERE n = 0), count(*) FILTER (WHERE n > 1) FROM ("
        f" SELECT a.id, count(t.{column}) AS n FROM acked a"
        f" LEFT JOIN {table} t ON t.{column} = a.id{where} GROUP BY a.id)"
    )
    missing, dup = stored(data_dir, sql, ids)[0]
    return int(missing or 0), int(dup or 0)


def audit_verifies(data_dir: Path) -> tuple[bool, str]:
    verified = run_cli(data_dir, "audit", "verify")
    return verified.returncode == 0, (verified.stdout + verified.stderr).strip().splitlines()[-1:][0:1]


def open_fds(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.2f} %" if whole else "n/a"


# --------------------------------------------------------------------------- drills


def drill_kill(args: argparse.Namespace, work: Path) -> None:
    print(f"kill: {args.kills} SIGKILLs under load", flush=True)
    data_dir = work / "kill"
    rng = random.Random(7)
    traffic = Traffic(args.workers)
    with FakeOpenAI(record_limit=1_000_000) as fake:
        text = policy(mixed_routes("lab"), {"lab": fake})
        kills = 0
        for _ in range(args.kills):
            with fleetdeck_serve(data_dir, text) as served, traffic.running(served):
                traffic.wait_for_answers(args.workers)  # warmed up, under load
                time.sleep(rng.uniform(0, args.kill_after_s))
                served.kill()
                kills += 1
        # restart: replays the spool
        with fleetdeck_serve(data_dir, text) as served, httpx.Client(timeout=30) as client:
            after = call(client, served, "chat", False, "route:mixed")
    acked = [r.request_id for r in traffic.results if r.acked and r.request_id]
    refused = [r.request_id for r in traffic.pii if r.status == 400 and r.request_id]
    missing, dup = exactly_once(data_dir, acked)
    a_missing, a_dup = exactly_once(data_dir, refused, audit=True)
    verified, last = audit_verifies(data_dir)
    ok = kills == args.kills and missing == dup == a_missing == a_dup == 0 and verified and after.acked
    by_kind = {f"{k}{'+s' if s else ''}": 0 for k, s in KINDS}
    for r in traffic.results:
        if r.acked:
            by_kind[f"{r.kind}{'+s' if r.stream else ''}"] += 1
    row(
        "SIGKILL under load",
        kills,
        f"{len(acked)} acked traces: {missing} missing, {dup} twice; {len(refused)} acked audit "
        f"entries: {a_missing} missing, {a_dup} twice; audit verify {'ok' if verified else 'FAILED'}",
        "0 missing, 0 twice, chain verifies",
        ok,
        "acked by protocol: " + ", ".join(f"{k} {v}" for k, v in by_kind.items()),
        "" if verified else f"audit verify: {last}",
    )


def drill_breaker(args: argparse.Namespace, work: Path) -> None:
    print(f"breaker: {args.storm_calls} calls per failing primary", flush=True)
    with FakeOpenAI() as storm, FakeOpenAI() as stall, FakeOpenAI(record_limit=1_000_000) as backup:
        routes = (
            "  - {intent: storm, primary: storm/mock-gpt, fallback: [backup/mock-gpt], max_retries: 2,"
            " timeouts: {first_token_s: 1, total_s: 6}}\n"
            "  - {intent: stall, primary: stall/mock-gpt, fallback: [backup/mock-gpt], max_retries: 2,"
            " timeouts: {first_token_s: 1, total_s: 6}}\n"
        )
        extra = (
            "breaker: {consecutive_failures: 5, min_requests: 100000, base_ejection_s: 600,"
            " max_ejection_s: 600}\nretry: {backoff_base_s: 0.01, backoff_max_s: 0.05}\n"
        )
        text = policy(routes, {"storm": storm, "stall": stall, "backup": backup}, extra)
        storm.fail_always(Fault(status=503))
        stall.fail_always(Fault(delay_s=3))  # past the route's first_token_s (1 s): a stall
        with fleetdeck_serve(work / "breaker", text) as served, httpx.Client(timeout=30) as client:
            for name, fake in (("storm", storm), ("stall", stall)):
                kinds = itertools.cycle(KINDS)
                # One call at a time until the primary gets no more: the failures that ejected it.
                for _ in range(20):
                    before = fake.request_count
                    call(client, served, *next(kinds), f"route:{name}")
                    if fake.request_count == before:
                        break
                failures = fake.request_count
                ejected_at = fake.request_count

                def one(n: int, name: str = name) -> Result:
                    kind, stream = KINDS[n % len(KINDS)]
                    with httpx.Client(timeout=30) as c:
                        return call(c, served, kind, stream, f"route:{name}")

                with ThreadPoolExecutor(args.workers) as pool:
                    results = list(pool.map(one, range(args.storm_calls)))
                by_fallback = sum(1 for r in results if r.acked and r.model == "backup/mock-gpt")
                while_ejected = fake.request_count - ejected_at
                share = by_fallback / len(results)
                other = {r.error or f"http {r.status}" for r in results if not r.acked}
                row(
                    f"primary {'503 storm' if name == 'storm' else 'stalls'}",
                    len(results),
                    f"{pct(by_fallback, len(results))} by fallback; ejected after {failures} failures; "
                    f"{while_ejected} calls to it while ejected",
                    ">= 99.9 %, <= 5 failures, 0 while ejected",
                    share >= 0.999 and failures <= 5 and while_ejected == 0,
                    f"not served: {sorted(other)[:3]}" if other else "",
                )


def drill_retries(args: argparse.Namespace, work: Path) -> None:
    print(f"retries: {args.outage_calls} calls in an outage", flush=True)
    with FakeOpenAI(record_limit=1_000_000) as lab:
        routes = (
            "  - {intent: alone, primary: lab/mock-gpt, max_retries: 2, timeouts: {total_s: 10}}\n"
            "  - {intent: guarded, primary: lab/mock-gpt, pii: block, max_retries: 2}\n"
        )
        # The breaker out of the way: what is measured is the retries alone.
        extra = (
            "breaker: {consecutive_failures: 1000000, min_requests: 1000000}\n"
            "retry: {backoff_base_s: 0.01, backoff_max_s: 0.05}\n"
        )
        text = policy(routes, {"lab": lab}, extra)
        with fleetdeck_serve(work / "retries", text) as served, httpx.Client(timeout=30) as client:
            kinds = itertools.cycle(KINDS)
            # The outage first, on a target that has banked no retries yet: every upstream call a 503.
            lab.fail_always(Fault(status=503))
            before = lab.request_count

            def one(n: int) -> Result:
                kind, stream = KINDS[n % len(KINDS)]
                with httpx.Client(timeout=30) as c:
                    return call(c, served, kind, stream, "route:alone")

            with ThreadPoolExecutor(args.workers) as pool:
                results = list(pool.map(one, range(args.outage_calls)))
            upstream = lab.request_count - before
            ratio = upstream / len(results)
            statuses = sorted({r.status for r in results})
            row(
                "retries in an outage",
                len(results),
                f"{upstream} upstream calls for {len(results)} client calls: {ratio:.3f}x",
                "<= 1.2x",
                ratio <= 1.2,
                f"client statuses {statuses}",
            )
            lab.clear_faults()
            # Retry-After: a 429 asking for 1 s, after a few calls that succeed.
            honoured = waited = 0
            for _ in range(args.retry_after_runs):
                for _ in range(5):
                    call(client, served, *next(kinds), "route:alone")
                lab.fail_next(1, Fault(status=429, retry_after=1))
                before = lab.request_count
                result = call(client, served, "chat", False, "route:alone")
                sent = lab.requests[before:]
                if result.acked and len(sent) == 2:
                    waited += 1
                    honoured += sent[1].ts - sent[0].ts >= 1.0
            row(
                "Retry-After honoured",
                args.retry_after_runs,
                f"{honoured} of {args.retry_after_runs} retried after >= 1 s ({waited} retried at all)",
                "all",
                honoured == args.retry_after_runs,
            )
            # No retry on a 4xx, none for a guard refusal.
            retried_4xx = upstream_refused = 0
            for _ in range(args.retry_after_runs):
                lab.fail_next(1, Fault(status=400))
                before = lab.request_count
                result = call(client, served, "chat", False, "route:alone")
                retried_4xx += (lab.request_count - before != 1) or result.status != 400
                before = lab.request_count
                result = call(client, served, "chat", False, "route:guarded", PII_TEXT)
                upstream_refused += (lab.request_count != before) or result.status != 400
            row(
                "no retry on 4xx / guard",
                args.retry_after_runs * 2,
                f"{retried_4xx} 4xx retried, {upstream_refused} guard refusals sent upstream",
                "0, 0",
                retried_4xx == upstream_refused == 0,
            )


def drill_stream(args: argparse.Namespace, work: Path) -> None:
    print(f"stream: {args.streams} streams stalled or cut", flush=True)
    idle_s = 1.0
    with FakeOpenAI(record_limit=1_000_000) as lab:
        routes = (
            f"  - {{intent: streamy, primary: lab/mock-gpt, max_retries: 0,"
            f" timeouts: {{first_token_s: 5, idle_s: {idle_s}, total_s: 30}}}}\n"
        )
        text = policy(routes, {"lab": lab})
        with fleetdeck_serve(work / "stream", text) as served:
            assert served.process is not None
            pid = served.process.pid

            def one(n: int) -> Result:
                kind, stream = STREAM_KINDS[n % len(STREAM_KINDS)]
                with httpx.Client(timeout=30) as c:
                    return call(c, served, kind, stream, "route:streamy")

            with ThreadPoolExecutor(args.workers) as pool:  # warm up: pools and connections open
                warm = list(pool.map(one, range(3 * args.workers)))
            baseline = open_fds(pid)
            lab.fail_ratio(0.5, Fault(stall_at=3, stall_s=idle_s + 3, stream=True), seed=3)
            lab.fail_always(Fault(cut_after=3, stream=True))
            with ThreadPoolExecutor(args.workers * 2) as pool:
                results = list(pool.map(one, range(args.streams)))
            lab.clear_faults()
            peak = open_fds(pid)
            deadline = time.monotonic() + 20  # upstream stalls end, sockets close
            after = open_fds(pid)
            while after > baseline and time.monotonic() < deadline:
                time.sleep(0.25)
                after = open_fds(pid)
    stalled = [r for r in results if r.error_event and r.error_gap_s is not None and r.error_gap_s > 0.5]
    errors = sum(1 for r in results if r.error_event)
    clean = sum(1 for r in results if r.clean)
    late = [r for r in results if r.error_event and (r.error_gap_s or 0) > idle_s + 1]
    worst = max((r.error_gap_s or 0 for r in results if r.error_event), default=0.0)
    other = {r.error or f"http {r.status}" for r in results if not r.error_event}
    row(
        "streams stalled or cut",
        len(results),
        f"{errors} error events ({len(stalled)} after a stall), {clean} clean ends, {len(late)} late; "
        f"worst gap {worst:.2f} s (idle {idle_s:.0f} s); fds {baseline} -> {peak} -> {after}",
        f"all error events <= {idle_s + 1:.0f} s, 0 clean, fds back to baseline",
        errors == len(results) and clean == 0 and not late and after <= baseline,
        f"warm-up streams clean: {sum(r.clean for r in warm)}/{len(warm)}",
        f"without an error event: {sorted(other)[:3]}" if other else "",
    )


@contextlib.contextmanager
def small_fs(path: Path, size_mb: int) -> Iterator[bool]:
    """A tmpfs of `size_mb` at `path` (root only); False when it cannot be mounted."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(path)],
        capture_output=True,
        check=False,
    )
    try:
        yield mounted.returncode == 0
    finally:
        if mounted.returncode == 0:
            subprocess.run(["umount", "-l", str(path)], check=False)


def fill(path: Path) -> int:
    """Write `path` until the filesystem is full; the bytes written."""
    written, chunk = 0, b"\0" * (1 << 20)
    with path.open("wb", buffering=0) as f:
        while len(chunk) >= 512:
            try:
                written += f.write(chunk)
            except OSError:
                chunk = chunk[: len(chunk) // 2]
    return written


def drill_disk(args: argparse.Namespace, work: Path) -> None:
    print(f"disk: the data dir's disk full for {args.full_s:.0f} s under load, {args.disk_runs}x", flush=True)
    mount = work / "disk"
    with FakeOpenAI(record_limit=1_000_000) as lab, small_fs(mount, args.disk_mb) as mounted:
        if not mounted:
            row("spool disk full", 0, "skipped: no tmpfs (needs root)", "-", True)
            return
        data_dir = mount / "data"
        text = policy(mixed_routes("lab"), {"lab": lab})
        traffic = Traffic(args.workers, pii_every=0)
        full: list[Result] = []
        recovered = 0
        for _ in range(args.disk_runs):
            with fleetdeck_serve(data_dir, text) as served, traffic.running(served):
                traffic.wait_for_answers(args.workers * 4)
                filler = mount / "filler"
                began = len(traffic.results)
                fill(filler)
                time.sleep(args.full_s)
                full += traffic.results[began:]
                filler.unlink()
                # Space is back: calls are accepted and served again.
                recovered += traffic.wait_for_answers(args.workers * 10, acked=True) >= args.workers * 10
        with fleetdeck_serve(data_dir, text) as served, httpx.Client(timeout=30) as client:
            after = call(client, served, "chat", False, "route:mixed")
        acked = [r.request_id for r in traffic.results if r.acked and r.request_id]
        missing, dup = exactly_once(data_dir, acked)
    served_full = sum(1 for r in full if r.acked)
    refused = [r for r in full if not r.acked]
    reasons: dict[str, int] = {}
    for r in refused:
        key = f"{r.status} {r.error[:70]}"
        reasons[key] = reasons.get(key, 0) + 1
    clear = all(r.status in (503, 507) or r.error_event for r in refused)
    row(
        "spool disk full",
        args.disk_runs,
        f"{len(acked)} acked: {missing} missing, {dup} twice; while full {served_full} served, "
        f"{len(refused)} refused{' with a clear error' if clear else ''}; served again once space was back "
        f"in {recovered} of {args.disk_runs}",
        "0 missing, 0 twice, refusals clear, served again",
        missing == dup == 0 and clear and after.acked and recovered == args.disk_runs,
        *(f"while full: {n} x {k}" for k, n in sorted(reasons.items(), key=lambda kv: -kv[1])[:4]),
    )


HOLDER = (
    "import duckdb, sys, time\n"
    "con = duckdb.connect(sys.argv[1])\n"
    "print('held', flush=True)\n"
    "sys.stdin.read()\n"
)


def drill_held(args: argparse.Namespace, work: Path) -> None:
    print(f"held: the DuckDB file held by another process, {args.held_runs}x", flush=True)
    data_dir = work / "held"
    with FakeOpenAI() as lab:
        text = policy(mixed_routes("lab"), {"lab": lab})
        with fleetdeck_serve(data_dir, text) as served, httpx.Client(timeout=30) as client:
            for kind, stream in KINDS:
                call(client, served, kind, stream, "route:mixed")
        (before,) = stored(data_dir, "SELECT count(*) FROM traces", [])[0]
        named = clean_exit = 0
        messages = []
        for _ in range(args.held_runs):
            holder = subprocess.Popen(
                [sys.executable, "-c", HOLDER, str(data_dir / "fleetdeck.duckdb")],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            try:
                assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
                started = subprocess.run(
                    [sys.executable, "-m", "console", "serve", "--port", "0", "--data-dir", str(data_dir)],
                    capture_output=True,
                    text=True,
                    cwd=REPO,
                    timeout=60,
                    check=False,
                )
                messages.append(" ".join(started.stderr.split()))
                named += started.returncode != 0 and f"PID {holder.pid}" in started.stderr
                clean_exit += started.returncode != 0 and "Traceback" not in started.stderr
            finally:
                if holder.stdin is not None:
                    holder.stdin.close()
                holder.wait(10)
        (after,) = stored(data_dir, "SELECT count(*) FROM traces", [])[0]
        verified, _ = audit_verifies(data_dir)
    row(
        "DuckDB file held",
        args.held_runs,
        f"{named} errors naming the holder's PID, {clean_exit} without a traceback; traces "
        f"{before} -> {after}; audit verify {'ok' if verified else 'FAILED'}",
        "all name it, store intact",
        named == clean_exit == args.held_runs and after == before and verified,
        f"message: {messages[-1][:160]}" if messages else "",
    )


DRILLS: dict[str, Callable[[argparse.Namespace, Path], None]] = {
    "kill": drill_kill,
    "breaker": drill_breaker,
    "retries": drill_retries,
    "stream": drill_stream,
    "disk": drill_disk,
    "held": drill_held,
}
FULL = {
    "kills": 20,
    "kill_after_s": 2.0,
    "storm_calls": 1000,
    "outage_calls": 1000,
    "retry_after_runs": 5,
    "streams": 1000,
    "disk_runs": 3,
    "full_s": 4.0,
    "disk_mb": 96,
    "held_runs": 3,
    "workers": 6,
}
QUICK = {
    **FULL,
    "kills": 3,
    "storm_calls": 100,
    "outage_calls": 100,
    "retry_after_runs": 2,
    "streams": 60,
    "disk_runs": 1,
    "held_runs": 1,
}


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="every drill with small counts")
    parser.add_argument("--only", default=os.environ.get("SOAK_ONLY", ""), help="drills, comma-separated")
    for name, default in FULL.items():
        flag = "--" + name.replace("_", "-")
        help_ = f"default {default} (SOAK_{name.upper()})"
        parser.add_argument(flag, type=type(default), default=None, help=help_)
    args = parser.parse_args(argv)
    base = QUICK if args.quick or os.environ.get("SOAK_QUICK") else FULL
    for name, default in base.items():
        if getattr(args, name) is None:
            env = os.environ.get(f"SOAK_{name.upper()}")
            setattr(args, name, type(default)(env) if env else default)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    chosen = [d for d in args.only.split(",") if d] or list(DRILLS)
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="fleetdeck-soak-"))
    try:
        for name in chosen:
            try:
                DRILLS[name](args, work)
            except Exception as exc:  # a drill that breaks is a failed row, the others still run
                row(name, 0, f"drill crashed: {type(exc).__name__}: {str(exc)[:200]}", "-", False)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        quick = "quick" if args.quick else ""
        del args.quick
        print_table(time.monotonic() - started, args)
        if quick:
            print("(quick counts)")
    return 0 if all(r.ok for r in ROWS) else 1


if __name__ == "__main__":
    raise SystemExit(main())
