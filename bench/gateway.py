"""Gateway overhead: direct to a mock upstream vs through Fleetdeck vs through LiteLLM's proxy.

Three servers run side by side for the whole run, each its own process on loopback:

- the mock upstream (bench/mock_upstream.py): chat completions, JSON or SSE, answering
  after 0 ms (`mock-0ms`) or 50 ms (`mock-50ms`);
- `fleetdeck serve` with a policy routing `route:bench-0ms` / `route:bench-50ms` to the
  mock, prices for both models, a route cap (`max_budget_daily`) and a virtual key with
  a daily cap created before start: keys, routing, the budget ledger (reserve and
  settle on every call), pricing and tracing (spool + DuckDB) all run;
- LiteLLM's proxy (pinned, in bench/.venvs/litellm, installed on first use), one worker,
  no database, a master key, telemetry off.

The load generator (bench/loadgen.py) is a fourth process. Rounds are interleaved: for
each cell (delay × JSON/SSE × concurrency) the three targets run back to back, in an
order that rotates from cell to cell, so a burst of load from elsewhere on the box
hits all three alike. Per round: p50/p99 latency (to the last byte, JSON parsed),
throughput, CPU seconds per 1,000 requests of the serving process (from
/proc/<pid>/stat, its children included) and its resident memory.

Then the open-loop search for the maximum sustainable rate: constant-rate steps, each
×1.3 the last, until p99 ≥ 100 ms (or errors, or the rate is not reached) twice in a
row; the answer is the highest rate that held. Last, how long a Fleetdeck trace takes
to be queryable after its response (through the admin API).

Run alone: `.venv/bin/python bench/gateway.py [--duration 4] [--quick]`; writes
bench/out/gateway.json. bench/run.py runs it as part of `make bench`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
OUT = BENCH / "out"
LITELLM_VERSION = "1.106.12"  # the newest whose [proxy] extra resolves on PyPI here; 1.107.0 was compromised
LITELLM_VENV = BENCH / ".venvs" / "litellm"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
P99_GOAL_MS = 100.0

PROMPT = [
    {
        "role": "system",
        "content": "You are a support assistant for an online shop. Answer briefly and politely.",
    },
    {
        "role": "user",
        "content": "Hi, I was charged twice for my subscription this month (order 48213, October 3). "
        "Can you check what happened and refund the duplicate charge?",
    },
]


# -- processes ------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tree_pids(root: int) -> list[int]:
    """`root` and its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def cpu_seconds(root: int) -> float:
    total = 0.0
    for pid in tree_pids(root):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime
    return total


def rss_mb(root: int) -> float:
    total = 0
    for pid in tree_pids(root):
        with contextlib.suppress(OSError, IndexError, ValueError):
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
    return total / 2**20


class Server:
    """A child process with its output drained by threads (so a chatty server never blocks)."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], cwd: Path) -> None:
        self.name = name
        self.lines: queue.Queue[str] = queue.Queue()
        self.log: list[str] = []
        self.proc = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            env={**os.environ, **env},
            cwd=cwd,
            start_new_session=True,
        )
        threading.Thread(target=self._drain, args=(self.proc.stdout,), daemon=True).start()

    def _drain(self, stream: IO[str] | None) -> None:
        for line in stream or ():
            self.log.append(line)
            if len(self.log) > 2000:
                del self.log[:1000]
            self.lines.put(line)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_for_line(self, marker: str, timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            with contextlib.suppress(queue.Empty):
                line = self.lines.get(timeout=0.2)
                if marker in line:
                    return line
        raise RuntimeError(f"{self.name} did not start: {''.join(self.log[-30:])}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def wait_http(url: str, headers: dict[str, str], timeout_s: float, server: Server) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            break
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"{server.name} did not answer {url}: {''.join(server.log[-30:])}")


def start_mock() -> tuple[Server, int]:
    mock = Server("mock", [sys.executable, str(BENCH / "mock_upstream.py"), "--port", "0"], {}, REPO)
    port = int(mock.wait_for_line("listening on", 30).split()[-1])
    return mock, port


FLEETDECK_POLICY = """\
providers:
  mock:
    kind: openai_compat
    base_url: http://127.0.0.1:{port}/v1
    prices:
      mock-0ms: {{input: 1.00, output: 2.00}}
      mock-50ms: {{input: 1.00, output: 2.00}}
      mock-judge-50ms: {{input: 1.00, output: 2.00}}  # the judge of bench/judge.py
routes:
  - intent: bench-0ms
    primary: mock/mock-0ms
    max_retries: 0
    max_budget_daily: 1000000
  - intent: bench-50ms
    primary: mock/mock-50ms
    max_retries: 0
    max_budget_daily: 1000000
default_route: bench-0ms
"""
FLEETDECK_ENV = {"PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"}


def start_fleetdeck(
    mock_port: int, work: Path, name: str = "fleetdeck", more_policy: str = "", source: Path = REPO
) -> tuple[Server, str, str, Path]:
    """`fleetdeck serve` on a fresh data dir with one prod key (daily cap $1e9) made before start;
    `source` is the tree whose `console` package runs (another revision's, for bench/revisions.py)."""
    env = {**FLEETDECK_ENV, "PYTHONPATH": str(source)}
    data_dir = work / f"{name}-data"
    data_dir.mkdir()
    policy = work / f"{name}-routes.yaml"
    policy.write_text(FLEETDECK_POLICY.format(port=mock_port) + more_policy)
    make_key = (
        "from pathlib import Path; from console.engine import Engine; from console.settings import Settings\n"
        f"with Engine(Settings(data_dir=Path({str(data_dir)!r}))) as e:\n"
        "    print(e.key_admin.create('bench', 'prod', daily_cap=1e9)[1])\n"
    )
    key = subprocess.run(
        [sys.executable, "-c", make_key],
        capture_output=True,
        text=True,
        check=True,
        cwd=source,
        env={**os.environ, **env},
    ).stdout.strip()
    port = free_port()
    args = [sys.executable, "-m", "console", "serve", "--port", str(port), "--policy", str(policy)]
    server = Server(name, [*args, "--data-dir", str(data_dir)], env, source)
    server.wait_for_line(" on http://", 60)
    return server, f"http://127.0.0.1:{port}", key, data_dir


LITELLM_CONFIG = """\
model_list:
  - model_name: "mock-*"
    litellm_params:
      model: "openai/*"
      api_base: http://127.0.0.1:{port}/v1
      api_key: sk-bench-upstream
litellm_settings:
  telemetry: false
  drop_params: true
general_settings:
  master_key: {master}
"""
LITELLM_MASTER = "sk-bench-master"
LITELLM_ENV = {
    "LITELLM_TELEMETRY": "False",
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no fetch of the price map at start
    "LITELLM_LOG": "ERROR",
    "DISABLE_SCHEMA_UPDATE": "true",
    "LITELLM_MODE": "PRODUCTION",
}


def ensure_litellm() -> Path:
    """bench/.venvs/litellm with `litellm[proxy]==LITELLM_VERSION`, made on first use."""
    python = LITELLM_VENV / "bin" / "python"
    probe = [str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"]
    if python.exists():
        found = subprocess.run(probe, capture_output=True, text=True, check=False)
        if found.returncode == 0 and found.stdout.strip() == LITELLM_VERSION:
            return LITELLM_VENV / "bin" / "litellm"
    print(f"  installing litellm[proxy]=={LITELLM_VERSION} into {LITELLM_VENV} …", flush=True)
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, f"litellm[proxy]=={LITELLM_VERSION}"], check=True)
    return LITELLM_VENV / "bin" / "litellm"


def start_litellm(mock_port: int, work: Path) -> tuple[Server, str]:
    executable = ensure_litellm()
    config = work / "litellm.yaml"
    config.write_text(LITELLM_CONFIG.format(port=mock_port, master=LITELLM_MASTER))
    port = free_port()
    args = [str(executable), "--config", str(config), "--port", str(port), "--num_workers", "1"]
    server = Server("litellm", args, LITELLM_ENV, work)
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/v1/models", {"Authorization": f"Bearer {LITELLM_MASTER}"}, 180, server)
    return server, url


# -- targets and rounds ---------------------------------------------------------------------------


@dataclass
class Target:
    name: str
    url: str
    headers: dict[str, str]
    model_prefix: str  # + "0ms" / "50ms"
    server: Server
    rss_max_mb: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def body(self, delay_ms: int, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"model": f"{self.model_prefix}{delay_ms}ms", "messages": PROMPT}
        body["max_tokens"] = 256
        if stream:
            body |= {"stream": True, "stream_options": {"include_usage": True}}
        return body


class LoadGen:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(BENCH / "loadgen.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )

    def run(self, target: Target, spec: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        spec = {"url": f"{target.url}/v1/chat/completions", "headers": target.headers, **spec}
        cpu0 = cpu_seconds(target.server.pid)
        self.proc.stdin.write(json.dumps(spec) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the load generator died")
        result: dict[str, Any] = json.loads(line)
        cpu = cpu_seconds(target.server.pid) - cpu0
        rss = rss_mb(target.server.pid)
        target.rss_max_mb = max(target.rss_max_mb, rss)
        result["server_cpu_s"] = cpu
        result["server_rss_mb"] = rss
        result["cpu_s_per_1k"] = cpu / result["completed"] * 1000 if result["completed"] else None
        result["loadavg"] = os.getloadavg()[0]
        return result

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(timeout=30)


def rotated(targets: list[Target], i: int) -> list[Target]:
    k = i % len(targets)
    return targets[k:] + targets[:k]


def closed_rounds(
    gen: LoadGen, targets: list[Target], delays: list[int], concurrencies: list[int], duration: float
) -> list[dict[str, Any]]:
    cells = []
    i = 0
    for delay in delays:
        for kind in ("json", "sse"):
            for conc in concurrencies:
                cell: dict[str, Any] = {"delay_ms": delay, "kind": kind, "concurrency": conc, "results": {}}
                for target in rotated(targets, i):
                    spec = {
                        "body": target.body(delay, kind == "sse"),
                        "mode": "closed",
                        "concurrency": conc,
                        "duration": duration,
                        "warmup": 0.5,
                    }
                    r = gen.run(target, spec)
                    cell["results"][target.name] = r
                    print(
                        f"  closed {delay:>2}ms {kind:<4} c={conc:<3} {target.name:<10} "
                        f"p50 {fmt(r['p50_ms'])} p99 {fmt(r['p99_ms'])} ms  {r['rps']:7.0f} rps  "
                        f"cpu/1k {fmt(r['cpu_s_per_1k'], 2)} s  err {sum(r['errors'].values())}",
                        flush=True,
                    )
                i += 1
                cells.append(cell)
    return cells


def holds(r: dict[str, Any], rate: float) -> bool:
    errors = sum(r["errors"].values())
    return (
        r["p99_ms"] is not None
        and r["p99_ms"] < P99_GOAL_MS
        and errors <= 0.01 * max(r["ok"], 1)
        and r["rps"] >= 0.95 * rate
    )


def max_rate_search(
    gen: LoadGen,
    targets: list[Target],
    kind: str,
    start: dict[str, float],
    step_s: float,
    factor: float = 1.3,
    max_steps: int = 8,
) -> dict[str, dict[str, Any]]:
    """Open-loop steps, interleaved across targets.

    Up ×factor after a step that held. After a failure: down ×0.6 while nothing has held
    yet (at most 4 times), else one retry halfway between the best and the failed rate;
    a target is done after two failures in a row above its best.
    """
    state: dict[str, dict[str, Any]] = {
        t.name: {"rate": start[t.name], "best": 0.0, "fails": 0, "downs": 0, "steps": [], "done": False}
        for t in targets
    }
    for step in range(max_steps):
        active = [t for t in targets if not state[t.name]["done"]]
        if not active:
            break
        for target in rotated(active, step):
            s = state[target.name]
            rate = float(s["rate"])
            spec = {"body": target.body(0, kind == "sse"), "mode": "open", "rate": rate}
            spec |= {"duration": step_s, "warmup": 0.5}
            r = gen.run(target, spec)
            ok = holds(r, rate)
            s["steps"].append({"rate": rate, **r, "held": ok})
            print(
                f"  open   {kind:<4} {target.name:<10} {rate:7.0f}/s → {r['rps']:7.0f}/s "
                f"p99 {fmt(r['p99_ms'])} ms {'held' if ok else 'FAILED'}",
                flush=True,
            )
            if ok:
                s["best"], s["fails"] = max(s["best"], rate), 0
                s["rate"] = rate * factor
            elif s["best"] == 0:
                s["downs"] += 1
                s["rate"] = rate * 0.6
                s["done"] = s["downs"] >= 4
            else:
                s["fails"] += 1
                s["rate"] = (s["best"] + rate) / 2
                s["done"] = s["fails"] >= 2
    return {
        name: {"max_rps": s["best"], "steps": s["steps"], "capped": not s["done"]}
        for name, s in state.items()
    }


def trace_visibility(fleetdeck: Target, data_dir: Path, samples: int) -> dict[str, Any]:
    """Time from the end of a response to its trace answering a query through the admin API."""
    import httpx

    from console.gateway.admin import AdminEndpoint

    endpoint = AdminEndpoint.find(data_dir)
    assert endpoint is not None, "Fleetdeck published no admin endpoint"
    delays, polls = [], []
    with httpx.Client(timeout=10) as client:
        for _ in range(samples):
            response = client.post(
                f"{fleetdeck.url}/v1/chat/completions",
                headers=fleetdeck.headers,
                json=fleetdeck.body(0, False),
            )
            done = time.perf_counter()
            request_id = response.headers["x-fleetdeck-request-id"]
            n = 0
            while True:
                n += 1
                sql = f"SELECT 1 FROM traces WHERE request_id = '{request_id}'"
                if endpoint.query({"sql": sql}).num_rows:
                    break
                if time.perf_counter() - done > 10:
                    raise RuntimeError(f"trace {request_id} not visible after 10 s")
                time.sleep(0.005)
            delays.append((time.perf_counter() - done) * 1000)
            polls.append(n)
            time.sleep(0.05)
    delays.sort()
    return {
        "samples": samples,
        "p50_ms": delays[len(delays) // 2],
        "max_ms": delays[-1],
        "polls_mean": sum(polls) / len(polls),
    }


def stored_traces(data_dir: Path) -> dict[str, int]:
    from console.gateway.admin import AdminEndpoint

    endpoint = AdminEndpoint.find(data_dir)
    assert endpoint is not None
    table = endpoint.query({"sql": "SELECT status, count(*) AS n FROM traces GROUP BY status"})
    return {row["status"]: int(row["n"]) for row in table.to_pylist()}


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


# -- main -----------------------------------------------------------------------------------------


@contextlib.contextmanager
def servers(work: Path) -> Iterator[tuple[list[Target], Path]]:
    started: list[Server] = []
    try:
        mock, mock_port = start_mock()
        started.append(mock)
        fd, fd_url, key, data_dir = start_fleetdeck(mock_port, work)
        started.append(fd)
        ll, ll_url = start_litellm(mock_port, work)
        started.append(ll)
        targets = [
            Target("direct", f"http://127.0.0.1:{mock_port}", {}, "mock-", mock),
            Target("fleetdeck", fd_url, {"Authorization": f"Bearer {key}"}, "route:bench-", fd),
            Target("litellm", ll_url, {"Authorization": f"Bearer {LITELLM_MASTER}"}, "mock-", ll),
        ]
        yield targets, data_dir
    finally:
        for server in reversed(started):
            server.stop()


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {name: md.version(name) for name in ("starlette", "uvicorn", "httpx", "httpx-aiohttp", "aiohttp")}
    out["litellm"] = LITELLM_VERSION
    return out


def run(duration: float, step_s: float, quick: bool) -> dict[str, Any]:
    delays = [0] if quick else [0, 50]
    concurrencies = [1, 16] if quick else [1, 16, 64]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fleetdeck-bench-") as tmp, servers(Path(tmp)) as (targets, data):
        print(
            "  servers up: " + ", ".join(f"{t.name} {t.url} (pid {t.server.pid})" for t in targets),
            flush=True,
        )
        idle_rss = {t.name: rss_mb(t.server.pid) for t in targets}
        gen = LoadGen()
        try:
            for t in targets:  # connections, imports and caches warm before anything is measured
                gen.run(t, {"body": t.body(0, False), "mode": "closed", "concurrency": 4, "duration": 1.0})
                gen.run(t, {"body": t.body(0, True), "mode": "closed", "concurrency": 4, "duration": 0.5})
            load_before = Path("/proc/loadavg").read_text().strip()
            cells = closed_rounds(gen, targets, delays, concurrencies, duration)
            search = {}
            for kind in ("json", "sse"):
                c16 = next(
                    c for c in cells if c["kind"] == kind and c["concurrency"] == 16 and c["delay_ms"] == 0
                )
                start = {name: max(2.0, 0.35 * r["rps"]) for name, r in c16["results"].items()}
                search[kind] = max_rate_search(gen, targets, kind, start, step_s)
            load_after = Path("/proc/loadavg").read_text().strip()
        finally:
            gen.close()
        fleetdeck = next(t for t in targets if t.name == "fleetdeck")
        visibility = trace_visibility(fleetdeck, data, 10 if quick else 20)
        time.sleep(1.0)
        traces = stored_traces(data)
        memory = {t.name: {"idle_rss_mb": idle_rss[t.name], "max_rss_mb": t.rss_max_mb} for t in targets}
    return {
        "duration_s": duration,
        "step_s": step_s,
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        "versions": versions(),
        "closed": cells,
        "max_rps": search,
        "memory": memory,
        "trace_visibility": visibility,
        "fleetdeck_traces_by_status": traces,
        "elapsed_s": time.perf_counter() - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per closed-loop round")
    parser.add_argument("--step", type=float, default=3.0, help="seconds per open-loop step")
    parser.add_argument("--quick", action="store_true", help="0 ms only, concurrency 1 and 16")
    parser.add_argument("--out", type=Path, default=OUT / "gateway.json")
    args = parser.parse_args()
    if shutil.which("litellm") is None and not LITELLM_VENV.exists():
        print("  (LiteLLM is installed into bench/.venvs/litellm on first use)")
    result = run(args.duration, args.step, args.quick)
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out} in {result['elapsed_s']:.0f}s")


if __name__ == "__main__":
    main()
