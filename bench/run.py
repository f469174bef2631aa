# ruff: noqa: E501  (Markdown table rows read better unbroken)
"""`make bench`: every benchmark in one run, then bench/RESULTS.md and bench/results.json.

1. bench/gateway.py          direct vs Fleetdeck vs LiteLLM's proxy on a mock upstream
2. bench/local_inference.py  Fleetdeck's local model vs bare llama-cpp-python
3. bench/ingest.py           the store: ingest rate, pane queries at 1 M and 10 M traces
4. bench/judge.py            the gateway with the judge off vs on (5 %): latency, judged share
5. bench/cache.py            the response cache: lookups at 10k / 100k entries, hit vs miss end to end
6. bench/guards.py           the guards: PII scan and injection score per call on 1 KB / 2 KB prompts
7. bench/injection.py        the injection guard: patterns alone vs patterns + MiniLM head, µs per prompt
8. bench/mcp_gateway.py      an MCP tools/call straight to the server vs through Fleetdeck's /mcp
9. bench/otlp.py             the gateway with OTLP export off, on, and with its collector down
10. bench/cluster.py         one box vs a cluster replica (ledger, keys, stops in PostgreSQL)
11. bench/start.py           serve's start with 100k cached entries (saved vs rebuilt index)
12. bench/console_start.py   the console's first and warm starts to a populated Traffic pane
13. bench/live_tail.py       the console headless: response → its row on the Traffic pane, push vs poll

Each part runs as its own process and writes bench/out/<part>.json; a part that fails
is reported as failed and the others still run. Numbers are never asserted: the tables
say which goals of issue 11 were met on this run. The machine is shared and small, so
the report carries the load average around each part, and the comparisons that matter
are ratios between rounds interleaved in the same run.

Run: `.venv/bin/python bench/run.py [--quick] [--only gateway local ingest judge cache guards injection mcp otlp cluster start console live]`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
OUT = BENCH / "out"
PARTS = (
    "gateway",
    "local",
    "ingest",
    "judge",
    "cache",
    "guards",
    "injection",
    "mcp",
    "otlp",
    "cluster",
    "start",
    "console",
    "live",
)


def part_command(part: str, quick: bool) -> list[str]:
    py = sys.executable
    if part == "gateway":
        return [
            py,
            str(BENCH / "gateway.py"),
            *(["--quick", "--duration", "2", "--step", "2"] if quick else []),
        ]
    if part == "local":
        return [
            py,
            str(BENCH / "local_inference.py"),
            *(["--rounds", "1", "--max-tokens", "48"] if quick else []),
        ]
    if part == "judge":
        return [py, str(BENCH / "judge.py"), *(["--requests", "1000"] if quick else [])]
    if part == "cache":
        return [py, str(BENCH / "cache.py"), *(["--sizes", "10000"] if quick else [])]
    if part == "guards":
        return [py, str(BENCH / "guards.py"), *(["--rounds", "2"] if quick else [])]
    if part == "injection":
        return [py, str(BENCH / "injection.py"), *(["--prompts", "100"] if quick else [])]
    if part == "mcp":
        return [py, str(BENCH / "mcp_gateway.py"), *(["--calls", "100", "--rounds", "2"] if quick else [])]
    if part == "cluster":
        return [py, str(BENCH / "cluster.py"), *(["--quick", "--duration", "2"] if quick else [])]
    if part == "start":
        return [py, str(BENCH / "start.py"), *(["--entries", "10000", "--rounds", "1"] if quick else [])]
    if part == "console":
        return [py, str(BENCH / "console_start.py"), *(["--rounds", "2"] if quick else [])]
    if part == "live":
        return [py, str(BENCH / "live_tail.py"), *(["--calls", "40", "--rounds", "1"] if quick else [])]
    if part == "otlp":
        return [py, str(BENCH / "otlp.py"), *(["--requests", "500", "--block", "100"] if quick else [])]
    sizes = ["--traces", "20000", "--sizes", "100000", "1000000"] if quick else []
    return [py, str(BENCH / "ingest.py"), *sizes]


def out_file(part: str) -> Path:
    names = {
        "gateway": "gateway.json",
        "local": "local_inference.json",
        "ingest": "ingest.json",
        "mcp": "mcp_gateway.json",
        "console": "console_start.json",
        "live": "live_tail.json",
    }
    return OUT / names.get(part, f"{part}.json")


def run_part(part: str, quick: bool) -> dict[str, Any]:
    load = Path("/proc/loadavg").read_text().strip()
    print(f"== {part} (load {load})", flush=True)
    started = time.perf_counter()
    out_file(part).unlink(missing_ok=True)
    done = subprocess.run(part_command(part, quick), cwd=REPO, check=False)
    elapsed = time.perf_counter() - started
    status: dict[str, Any] = {"returncode": done.returncode, "elapsed_s": elapsed, "loadavg_before": load}
    status["loadavg_after"] = Path("/proc/loadavg").read_text().strip()
    if done.returncode == 0 and out_file(part).exists():
        status["result"] = json.loads(out_file(part).read_text())
    print(f"== {part}: {'ok' if 'result' in status else 'FAILED'} in {elapsed:.0f}s", flush=True)
    return status


# -- machine ----------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    import importlib.metadata as md

    cpu = platform.processor()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kb = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    versions = {"python": platform.python_version()}
    for name in (
        "duckdb",
        "pyarrow",
        "llama_cpp_python",
        "starlette",
        "uvicorn",
        "httpx",
        "httpx-aiohttp",
        "aiohttp",
    ):
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            versions[name] = "-"
    rev = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=False
    )
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "console"], cwd=REPO, capture_output=True, text=True, check=False
    )
    commit = rev.stdout.strip() + (" + uncommitted changes in console/" if dirty.stdout.strip() else "")
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(mem_kb / 2**20, 1),
        "kernel": platform.release(),
        "fleetdeck_commit": commit or "-",
        "versions": versions,
    }


# -- the report -------------------------------------------------------------------------------------


def f(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float | int):
        return f"{value:,.{digits}f}"
    return str(value)


def ratio(a: float | None, b: float | None, digits: int = 1) -> str:
    return "-" if not a or not b else f"{a / b:.{digits}f}×"


def gateway_tables(g: dict[str, Any]) -> list[str]:
    lines = [
        "## 1. Gateway overhead (mock upstream on loopback)",
        "",
        f"Closed loop, {g['duration_s']:g} s per round after 0.5 s warm-up; rounds interleaved direct / Fleetdeck / "
        "LiteLLM with the order rotating per cell. Latency is to the last byte with the JSON parsed "
        "(streams: every event to `[DONE]`). Overhead = gateway p50 − direct p50 in the same cell. "
        f"Load average: {g['loadavg_before']} before, {g['loadavg_after']} after.",
        "",
        "| upstream delay | body | conc. | direct p50 / p99 ms | Fleetdeck p50 / p99 ms | LiteLLM p50 / p99 ms "
        "| overhead p50 Fleetdeck / LiteLLM ms | p99 LiteLLM ÷ Fleetdeck |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for cell in g["closed"]:
        r = cell["results"]
        d, fd, ll = r["direct"], r["fleetdeck"], r["litellm"]
        over_fd = fd["p50_ms"] - d["p50_ms"] if fd["p50_ms"] is not None and d["p50_ms"] is not None else None
        over_ll = ll["p50_ms"] - d["p50_ms"] if ll["p50_ms"] is not None and d["p50_ms"] is not None else None
        lines.append(
            f"| {cell['delay_ms']} ms | {cell['kind'].upper()} | {cell['concurrency']} "
            f"| {f(d['p50_ms'], 2)} / {f(d['p99_ms'])} | {f(fd['p50_ms'], 2)} / {f(fd['p99_ms'])} "
            f"| {f(ll['p50_ms'], 2)} / {f(ll['p99_ms'])} | {f(over_fd, 2)} / {f(over_ll, 2)} "
            f"| {ratio(ll['p99_ms'], fd['p99_ms'])} |"
        )
    lines += [
        "",
        "Throughput and cost per request in the same rounds (CPU of the serving process from /proc, its "
        "children included; for *direct* it is the mock's own CPU).",
        "",
        "| delay | body | conc. | req/s direct | req/s Fleetdeck | req/s LiteLLM | Fleetdeck ÷ LiteLLM "
        "| CPU s / 1k req mock | Fleetdeck | LiteLLM | errors F / L |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for cell in g["closed"]:
        r = cell["results"]
        d, fd, ll = r["direct"], r["fleetdeck"], r["litellm"]
        errors = f"{sum(fd['errors'].values())} / {sum(ll['errors'].values())}"
        lines.append(
            f"| {cell['delay_ms']} ms | {cell['kind'].upper()} | {cell['concurrency']} | {f(d['rps'], 0)} "
            f"| {f(fd['rps'], 0)} | {f(ll['rps'], 0)} | {ratio(fd['rps'], ll['rps'])} "
            f"| {f(d['cpu_s_per_1k'], 3)} | {f(fd['cpu_s_per_1k'], 2)} | {f(ll['cpu_s_per_1k'], 2)} | {errors} |"
        )
    lines += [
        "",
        f"Maximum sustainable rate, open loop (constant rate, {g['step_s']:g} s steps ×1.3, latency from the "
        "scheduled start): the highest rate with p99 < 100 ms, < 1 % errors and ≥ 95 % of the rate achieved. "
        "0 ms upstream delay.",
        "",
        "| body | direct req/s | Fleetdeck req/s | LiteLLM req/s | Fleetdeck ÷ LiteLLM | steps F / L |",
        "|---|---|---|---|---|---|",
    ]
    for kind, by in g["max_rps"].items():
        d, fd, ll = by["direct"], by["fleetdeck"], by["litellm"]
        capped = " (search capped)" if d.get("capped") else ""
        lines.append(
            f"| {kind.upper()} | {f(d['max_rps'], 0)}{capped} | {f(fd['max_rps'], 0)} | {f(ll['max_rps'], 0)} "
            f"| {ratio(fd['max_rps'], ll['max_rps'])} | {len(fd['steps'])} / {len(ll['steps'])} |"
        )
    mem = g["memory"]
    v = g["trace_visibility"]
    lines += [
        "",
        "| memory (RSS, process tree) | idle MB | max under load MB |",
        "|---|---|---|",
        *(f"| {name} | {f(m['idle_rss_mb'], 0)} | {f(m['max_rss_mb'], 0)} |" for name, m in mem.items()),
        "",
        f"Trace visible after its response (admin-API query polled every 5 ms, {v['samples']} sequential "
        f"requests): p50 {f(v['p50_ms'], 0)} ms, max {f(v['max_ms'], 0)} ms. Traces stored by Fleetdeck in the run: "
        + ", ".join(f"{k} {n:,}" for k, n in g["fleetdeck_traces_by_status"].items())
        + f". LiteLLM {g['versions']['litellm']} (one worker, no database, master key, telemetry off).",
        "",
    ]
    return lines


def local_tables(r: dict[str, Any]) -> list[str]:
    t = r["tokens_per_s"]
    return [
        "## 2. Local inference",
        "",
        f"{r['model']}, n_ctx {r['n_ctx']}, {r['n_threads']} thread(s), greedy, max_tokens {r['max_tokens']}, "
        f"{r['prompts']} prompts × {r['rounds']} interleaved rounds; tokens/s = completion tokens ÷ wall time "
        f"seen by the caller (prompt processing included). Load after: {r['loadavg']}.",
        "",
        "| path | completion tokens | tokens/s | × bare |",
        "|---|---|---|---|",
        f"| bare llama-cpp-python | {r['tokens']['bare']} | {f(t['bare'])} | 1.00× |",
        f"| Fleetdeck, JSON | {r['tokens']['fleetdeck_json']} | {f(t['fleetdeck_json'])} | {r['ratio_json']:.2f}× |",
        f"| Fleetdeck, SSE | {r['tokens']['fleetdeck_sse']} | {f(t['fleetdeck_sse'])} | {r['ratio_sse']:.2f}× |",
        "",
    ]


def ingest_tables(r: dict[str, Any]) -> list[str]:
    ing = r["ingest"]
    ceiling = ing["arrow_direct"]["queryable_per_s"]
    lines = [
        "## 3. Store",
        "",
        f"Ingest of {r.get('traces_per_round', 200_000):,} traces per path: `record()` acknowledged (spooled) "
        "and queryable (in DuckDB).",
        "",
        "| path | acked/s | queryable/s | × Arrow direct | record() p50 µs | p99 µs |",
        "|---|---|---|---|---|---|",
    ]
    for name, x in ing.items():
        lines.append(
            f"| {name} | {f(x.get('acked_per_s'), 0)} | {f(x['queryable_per_s'], 0)} "
            f"| {x['queryable_per_s'] / ceiling:.2f} | {f(x.get('record_p50_us'))} | {f(x.get('record_p99_us'), 0)} |"
        )
    lines += [
        "",
        "Pane queries (named queries, default window: last 30 days), warm.",
        "",
        "| traces | query | p50 ms | p95 ms | runs |",
        "|---|---|---|---|---|",
    ]
    for size, q in r["queries"].items():
        for name, x in q.items():
            if isinstance(x, dict):
                lines.append(
                    f"| {int(size):,} | {name} | {f(x['p50_ms'])} | {f(x['p95_ms'])} | {x.get('runs', '-')} |"
                )
    lines += ["", f"Load after: {r.get('loadavg', '-')}.", ""]
    return lines


def judge_tables(r: dict[str, Any]) -> list[str]:
    lines = [
        "## 4. The judge and the request path",
        "",
        f"Two `fleetdeck serve` on the mock: judge off vs on ({r['sample_rate']:.0%} of the calls judged by "
        f"{r['judge']}). Per concurrency, {r['requests']:,} requests to each, in blocks of {r['block']} "
        "alternating off / on (order rotating); percentiles over all of an instance's requests. Noise: the "
        "range of the *off* instance's block p50 and p99. Judged share: verdicts ÷ served calls of those "
        f"requests, once the judge drained its queue. Load average: {r['loadavg_before']} before, "
        f"{r['loadavg_after']} after.",
        "",
        "| conc. | off p50 / p95 / p99 ms | on p50 / p95 / p99 ms | on ÷ off p50 / p95 / p99 "
        "| noise: off block p50, p99 ms | CPU s / 1k req off / on | judged / served | share | dropped |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for lv in r["levels"]:
        off, on, ratios, noise, j = lv["off"], lv["on"], lv["ratio"], lv["noise"], lv["judge"]
        lines.append(
            f"| {lv['concurrency']} | {f(off['p50_ms'], 2)} / {f(off['p95_ms'], 2)} / {f(off['p99_ms'], 2)} "
            f"| {f(on['p50_ms'], 2)} / {f(on['p95_ms'], 2)} / {f(on['p99_ms'], 2)} "
            f"| {ratios['p50_ms']:.2f}× / {ratios['p95_ms']:.2f}× / {ratios['p99_ms']:.2f}× "
            f"| {f(noise['p50_ms'][0], 2)}–{f(noise['p50_ms'][1], 2)}, {f(noise['p99_ms'][0], 1)}–"
            f"{f(noise['p99_ms'][1], 1)} | {f(off['cpu_s_per_1k'], 2)} / {f(on['cpu_s_per_1k'], 2)} "
            f"| {j['judged']} / {j['eligible']} | {j['share']:.2%} | {j['dropped']} |"
        )
    st = r["store"]
    lines += [
        "",
        f"Whole run, from the *on* instance's store (warm-up included): {st['verdicts']:,} verdicts over "
        f"{st['served']:,} served calls = {st['share']:.2%}; {st['judge_calls']:,} judge calls traced.",
        "",
    ]
    return lines


def cache_tables(r: dict[str, Any]) -> list[str]:
    lines = [
        "## 5. Response cache",
        "",
        "One scope's usearch HNSW index (f16, 384 dimensions, vectors around 2,000 topics), queried with "
        "stored vectors moved to cosine ≈ 0.98 (paraphrase-like); `lookup()` = keys, exact probe, index search and "
        "anchor check with the embedding precomputed, for exact hits, semantic hits and misses (new questions).",
        "",
        "Wall time is what a caller saw on this shared box; CPU time (the thread's own) is what a lookup "
        "costs, and load does not inflate it.",
        "",
        "| entries | index build s | nearest p50 / p99 ms (CPU p50 / p99) | recall@1 "
        "| lookup exact p50 / p99 ms (CPU) | lookup semantic hit (CPU) | lookup miss (CPU) |",
        "|---|---|---|---|---|---|---|",
    ]

    def cell(x: dict[str, Any]) -> str:
        cpu = f" ({f(x.get('cpu_p50_ms'), 3)} / {f(x.get('cpu_p99_ms'), 2)})"
        return f"{f(x['p50_ms'], 3)} / {f(x['p99_ms'], 2)}{cpu}"

    for index, lookup in zip(r["index"], r["lookup"], strict=True):
        lines.append(
            f"| {index['entries']:,} | {f(index['build_s'])} | {cell(index)} | {index['recall_at_1']:.3f} "
            f"| {cell(lookup['exact'])} | {cell(lookup['semantic'])} | {cell(lookup['miss'])} |"
        )
    e2e = r["end_to_end"]
    miss = e2e["miss"]["p50_ms"]
    lines += [
        "",
        f"End to end through `fleetdeck serve` (local SmolLM2-135M, max_tokens {e2e['max_tokens']}, embedder "
        "MiniLM), latency seen by the client:",
        "",
        "| request | p50 ms | p99 ms | × faster than a miss (p50) |",
        "|---|---|---|---|",
    ]
    for phase in ("miss", "exact", "semantic"):
        x = e2e[phase]
        lines.append(f"| {phase} | {f(x['p50_ms'])} | {f(x['p99_ms'])} | {ratio(miss, x['p50_ms'])} |")
    p = r["paraphrases"]
    lines += [
        "",
        f"Paraphrase test ({p['pairs']} pairs, threshold {p['threshold']}): "
        + "; ".join(
            f"{name} precision {x['precision']:.2f}, recall {x['recall']:.2f}"
            for name, x in p["embedders"].items()
        )
        + f". Load after: {r['loadavg']}.",
        "",
    ]
    return lines


def guards_tables(r: dict[str, Any]) -> list[str]:
    lines = [
        "## 6. Guards",
        "",
        "PII scan and injection score of one typical support prompt (an e-mail address, a phone number, "
        "runbook text), best of the rounds, µs per call:",
        "",
        "| prompt | scan µs | injection_score µs |",
        "|---|---|---|",
    ]
    for size in (1024, 2048):
        lines.append(f"| {size:,} B | {f(r[f'scan_{size}B_us'])} | {f(r[f'injection_score_{size}B_us'])} |")
    lines += [
        "",
        f"Injection corpus ({r['injection_corpus_texts']} texts): {f(r['injection_corpus_mean_us'])} µs per text. "
        f"Calibration `sum(range(1000))`: {f(r['calibration_sum_range_1000_us'], 2)} µs.",
        "",
    ]
    return lines


def injection_tables(r: dict[str, Any]) -> list[str]:
    lines = [
        "## 7. Injection guard",
        "",
        "One prompt as a chat request through the patterns alone (`injection_guard: patterns`) and through "
        "patterns + MiniLM + the head (`combined`, the default), each first call cold; `repeated` is the same "
        "text again (a resent chat turn), served from the guard's cache. µs per prompt:",
        "",
        "| prompts | patterns p50 / p99 | combined p50 / p99 | repeated p50 / p99 | combined ÷ patterns (p50) |",
        "|---|---|---|---|---|",
    ]
    for name, label in (
        ("heldout_sample", "held-out sample"),
        ("typical_1024B", "typical 1 KB"),
        ("typical_2048B", "typical 2 KB"),
    ):
        row = r[name]
        cells = [
            f"{f(row[k]['p50_us'])} / {f(row[k]['p99_us'])}"
            for k in ("patterns", "combined", "combined_repeated")
        ]
        lines.append(
            f"| {label} ({row['prompts']}) | {' | '.join(cells)} | {row['combined_over_patterns_p50']}× |"
        )
    lines.append("")
    return lines


def mcp_tables(r: dict[str, Any]) -> list[str]:
    direct, fleetdeck = r["direct"], r["fleetdeck"]
    return [
        "## 8. MCP gateway",
        "",
        "`tools/call` of an echo tool with the `mcp` SDK's client, straight to the server and through "
        "Fleetdeck's `/mcp` (key, policy, schema, screening, trace, audit), interleaved rounds:",
        "",
        "| path | calls | p50 ms | p99 ms |",
        "|---|---|---|---|",
        f"| direct | {direct['n']} | {f(direct['p50_ms'])} | {f(direct['p99_ms'])} |",
        f"| through /mcp | {fleetdeck['n']} | {f(fleetdeck['p50_ms'])} | {f(fleetdeck['p99_ms'])} |",
        "",
        f"Added at p50: {f(r['added_p50_ms'])} ms ({r['ratio_p50']:.2f}×).",
        "",
    ]


def otlp_tables(r: dict[str, Any]) -> list[str]:
    lines = [
        "## 9. OTLP export",
        "",
        "Three `fleetdeck serve` on one mock upstream, interleaved blocks: export off, on (a collector "
        "that accepts), and on with the collector down (spans dropped and counted):",
        "",
        "| c | p50 ms off / on / down | p99 ms off / on / down | CPU s per 1k off / on / down |",
        "|---|---|---|---|",
    ]
    for lv in r["levels"]:
        cells = [
            " / ".join(f(lv[name][figure]) for name in ("off", "on", "down"))
            for figure in ("p50_ms", "p99_ms", "cpu_s_per_1k")
        ]
        lines.append(f"| {lv['concurrency']} | {' | '.join(cells)} |")
    export = r["export"]
    down = export["down"] or {}
    lines += [
        "",
        f"Spans received: {export['sink_spans']}; with the collector down, {down.get('dropped', 0)} dropped "
        f"and counted ({down.get('queued', 0)} still queued when the run ended).",
        "",
    ]
    return lines


def cluster_tables(r: dict[str, Any]) -> list[str]:
    return [
        "## 10. Cluster mode",
        "",
        f"One box vs a replica whose ledger, keys and stops live in PostgreSQL ({r['postgresql']}), "
        f"interleaved rounds of {r['duration_s']:g} s on the same mock upstream:",
        "",
        r["table"],
        "",
    ]


def start_tables(r: dict[str, Any]) -> list[str]:
    rows = [
        f"| {mode} | {f(r['summary'][mode]['healthz_s'], 2)} | {f(r['summary'][mode]['indexed_s'], 2)} |"
        for mode in ("rebuilt", "loaded")
    ]
    return [
        "## 11. Start with a full cache",
        "",
        f"`fleetdeck serve` over {r['entries']:,} cached entries in one scope, seconds from spawn "
        f"(median of {r['rounds']}); goal: `/healthz` ≤ 2 s at 100,000:",
        "",
        "| index | /healthz s | indexed s |",
        "| --- | --- | --- |",
        *rows,
        "",
    ]


def console_start_tables(r: dict[str, Any]) -> list[str]:
    first = r["first"]
    return [
        "## 12. The console's start",
        "",
        "The real console (embedded gateway, local model) headless under Textual's driver, seconds "
        "from spawn; the first start imports the sample traces; goal: a warm start ≤ 2 s to a "
        "populated Traffic pane:",
        "",
        "| start | panes live s | Traffic populated s |",
        "| --- | --- | --- |",
        f"| first (empty data dir) | {f(first['ready_s'], 2)} | {f(first['traffic_s'], 2)} |",
        f"| warm, median | {f(r['warm_ready']['p50'], 2)} | {f(r['warm_traffic']['p50'], 2)} |",
        f"| warm, slowest | {f(r['warm_ready']['max'], 2)} | {f(r['warm_traffic']['max'], 2)} |",
        "",
    ]


def live_tables(r: dict[str, Any]) -> list[str]:
    rows = [
        f"| {mode} | {s['n']} | {f(s['p50_ms'], 0)} | {f(s['p95_ms'], 0)} | {f(s['max_ms'], 0)} | "
        f"{s['never_shown']} | {s['traffic_queries']} |"
        for mode, s in r["summary"].items()
    ]
    return [
        "## 13. Live tail: a call's row on the console's Traffic pane",
        "",
        f"The console headless (`App.run_test()`) with its embedded gateway, {r['calls_per_round']} calls per round "
        f"through it (a random pause of 0–{2 * r['gap_s']:.1f} s between calls), {r['rounds']} interleaved rounds per "
        f"mode: ms from the response read to its end until the Traffic table draws the call's row. push: the "
        f"recorder's flushes (every {r['flush_interval_s']} s) reach the pane as messages; poll: the pane re-queries "
        "every 0.5 s. Goal: ≤ 1 s.",
        "",
        "| mode | calls | p50 ms | p95 ms | max ms | never shown | Traffic queries |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        *rows,
        "",
    ]


def cpu_goals(g: dict[str, Any]) -> list[tuple[str, str, str]]:
    """CPU of the serve process per 1,000 requests, at concurrency 16 on the 0 ms mock."""
    rows = []
    for kind, goal in (("json", 0.45), ("sse", 0.8)):
        c16 = next(
            (c for c in g["closed"] if c["delay_ms"] == 0 and c["kind"] == kind and c["concurrency"] == 16),
            None,
        )
        cpu = c16["results"]["fleetdeck"].get("cpu_s_per_1k") if c16 else None
        if cpu is not None:
            rows.append(
                (
                    f"CPU per 1,000 requests ≤ {goal} s ({kind.upper()}, every feature on)",
                    f"{cpu:.2f} s",
                    "met" if cpu <= goal else "not met",
                )
            )
    return rows


def live_goals(parts: dict[str, dict[str, Any]]) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    live = parts.get("live", {}).get("result")
    if live:
        push = live["summary"]["push"]
        shown = push["max_ms"] is not None and not push["never_shown"]
        measured = (
            f"p50 {f(push['p50_ms'], 0)} ms, p95 {f(push['p95_ms'], 0)} ms, max {f(push['max_ms'], 0)} ms"
        )
        if push["never_shown"]:
            measured += f", {push['never_shown']} never shown"
        rows.append(
            (
                "trace on the console's screen ≤ 1 s after its response (push)",
                measured,
                "met" if shown and push["max_ms"] <= 1000 else "not met",
            )
        )
    return rows


def start_goals(parts: dict[str, dict[str, Any]]) -> list[tuple[str, str, str]]:
    rows = []
    start = parts.get("start", {}).get("result")
    if start:
        healthz = start["summary"]["loaded"]["healthz_s"]
        rows.append(
            (
                f"`fleetdeck serve` answers /healthz ≤ 2 s with {start['entries']:,} cached entries",
                f"{f(healthz, 2)} s",
                "met" if healthz is not None and healthz <= 2 else "not met",
            )
        )
    console = parts.get("console", {}).get("result")
    if console:
        warm = console["warm_traffic"]["p50"]
        rows.append(
            (
                "console warm start ≤ 2 s to a populated Traffic pane",
                f"{warm:.2f} s",
                "met" if warm <= 2 else "not met",
            )
        )
    return rows


def judge_goals(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    rows = []
    for lv in r["levels"]:
        j, on, noise = lv["judge"], lv["on"], lv["noise"]
        if j["eligible"] >= 2000:
            miss = abs(j["share"] - r["sample_rate"]) * 100
            rows.append(
                (
                    f"judged share within 1 point of {r['sample_rate']:.0%} over 2,000 requests (c={lv['concurrency']})",
                    f"{j['judged']} / {j['eligible']} = {j['share']:.2%}",
                    "met" if miss <= 1 else "not met",
                )
            )
        inside = all(noise[p][0] <= on[p] <= noise[p][1] for p in ("p50_ms", "p99_ms"))
        rows.append(
            (
                f"latency with the judge on within noise (c={lv['concurrency']})",
                f"p50 {on['p50_ms']:.2f} ms in {noise['p50_ms'][0]:.2f}–{noise['p50_ms'][1]:.2f}, "
                f"p99 {on['p99_ms']:.1f} ms in {noise['p99_ms'][0]:.1f}–{noise['p99_ms'][1]:.1f}",
                "met" if inside else "not met",
            )
        )
    return rows


def goals(parts: dict[str, dict[str, Any]]) -> list[str]:
    rows: list[tuple[str, str, str]] = []
    g = parts.get("gateway", {}).get("result")
    if g:
        c1 = next(
            c for c in g["closed"] if c["delay_ms"] == 0 and c["kind"] == "json" and c["concurrency"] == 1
        )
        over = c1["results"]["fleetdeck"]["p50_ms"] - c1["results"]["direct"]["p50_ms"]
        rows.append(
            (
                "overhead p50 ≤ 1 ms at concurrency 1 (JSON)",
                f"{over:.2f} ms",
                "met" if over <= 1 else "not met",
            )
        )
        for kind in ("json", "sse"):
            by = g["max_rps"][kind]
            fd, ll = by["fleetdeck"]["max_rps"], by["litellm"]["max_rps"]
            x = fd / ll if ll else None
            if x is not None:
                measured = f"{fd:,.0f} vs {ll:,.0f} = {x:.1f}×"
            else:
                measured = f"{fd:,.0f} vs none: LiteLLM held p99 < 100 ms at no rate tried"
            met = (x is not None and x >= 20) or (x is None and fd > 0)
            rows.append(
                (
                    f"max sustainable req/s ≥ 20× LiteLLM ({kind.upper()})",
                    measured,
                    "met" if met else "not met",
                )
            )
            c16 = next(
                c for c in g["closed"] if c["delay_ms"] == 0 and c["kind"] == kind and c["concurrency"] == 16
            )
            p_fd, p_ll = c16["results"]["fleetdeck"]["p99_ms"], c16["results"]["litellm"]["p99_ms"]
            rows.append(
                (
                    f"p99 at concurrency 16 < 1/20 of LiteLLM's ({kind.upper()})",
                    f"{p_fd:.1f} vs {p_ll:.1f} ms = 1/{p_ll / p_fd:.1f}",
                    "met" if p_fd * 20 < p_ll else "not met",
                )
            )
        vis = g["trace_visibility"]["max_ms"]
        rows.append(
            (
                "trace visible ≤ 1 s after its response",
                f"max {vis:.0f} ms",
                "met" if vis <= 1000 else "not met",
            )
        )
        rows += cpu_goals(g)
    loc = parts.get("local", {}).get("result")
    if loc:
        worst = min(loc["ratio_json"], loc["ratio_sse"])
        rows.append(
            (
                "local inference ≥ 0.95× bare llama-cpp-python",
                f"JSON {loc['ratio_json']:.2f}×, SSE {loc['ratio_sse']:.2f}×",
                "met" if worst >= 0.95 else "not met",
            )
        )
    ing = parts.get("ingest", {}).get("result")
    if ing:
        best = max(x["queryable_per_s"] for k, x in ing["ingest"].items() if k.startswith("recorder"))
        rows.append(
            (
                "ingest ≥ 100,000 traces/s (record → queryable)",
                f"{best:,.0f}/s",
                "met" if best >= 1e5 else "not met",
            )
        )
        append = ing["ingest"]["duckdb_arrow_append"]["queryable_per_s"]
        rows.append(
            (
                "ingest ≥ 0.9× DuckDB's own Arrow append (same schema, same run)",
                f"{best:,.0f} vs {append:,.0f}/s = {best / append:.2f}×",
                "met" if best >= 0.9 * append else "not met",
            )
        )
        largest = max(ing["queries"], key=int)
        worst_q = max(
            ((name, x["p95_ms"]) for name, x in ing["queries"][largest].items() if isinstance(x, dict)),
            key=lambda item: item[1],
        )
        rows.append(
            (
                f"pane queries p95 ≤ 250 ms at {int(largest):,} traces",
                f"worst: {worst_q[0]} {worst_q[1]:,.0f} ms",
                "met" if worst_q[1] <= 250 else "not met",
            )
        )
    cache = parts.get("cache", {}).get("result")
    if cache:
        largest = max(cache["lookup"], key=lambda x: x["entries"])
        s = max(largest["semantic"], largest["miss"], key=lambda x: x.get("cpu_p50_ms", x["p50_ms"]))
        rows.append(
            (
                f"cache lookup < 1 ms at {largest['entries']:,} entries (slower of semantic hit / miss, p50 / p99)",
                f"wall {s['p50_ms']:.3f} / {s['p99_ms']:.2f} ms, CPU {f(s.get('cpu_p50_ms'), 3)} / "
                f"{f(s.get('cpu_p99_ms'), 2)} ms",
                "met" if s.get("cpu_p50_ms", s["p50_ms"]) < 1 else "not met",  # CPU: the box is shared
            )
        )
    judge = parts.get("judge", {}).get("result")
    if judge:
        rows += judge_goals(judge)
    rows += start_goals(parts) + live_goals(parts)
    return [
        "## Goals of issues 11, 6 and 25 on this run",
        "",
        "| goal | measured | |",
        "|---|---|---|",
        *(f"| {a} | {b} | {c} |" for a, b, c in rows),
        "",
    ]


def report(info: dict[str, Any], parts: dict[str, dict[str, Any]], total_s: float, quick: bool) -> str:
    v = info["versions"]
    lines = [
        "# Fleetdeck benchmarks",
        "",
        f"Written by `make bench` (bench/run.py{' --quick' if quick else ''}) on {time.strftime('%Y-%m-%d %H:%M %Z')}"
        f" in {total_s / 60:.1f} min. Numbers are this run's, on a shared machine: compare the ratios, "
        "which come from rounds interleaved in one run, more than the absolute values.",
        "",
        f"- Machine: {info['cpu']}, {info['cores']} cores, {info['memory_gb']} GB, Linux {info['kernel']}",
        f"- Fleetdeck {info['fleetdeck_commit']}; Python {v['python']}, DuckDB {v['duckdb']}, pyarrow "
        f"{v['pyarrow']}, llama-cpp-python {v['llama_cpp_python']}, Starlette {v['starlette']}, uvicorn "
        f"{v['uvicorn']}, httpx {v['httpx']} + httpx-aiohttp {v['httpx-aiohttp']}, aiohttp {v['aiohttp']}",
        "- Load generator: bench/loadgen.py (asyncio + aiohttp, its own process); upstream: bench/mock_upstream.py "
        "(raw asyncio HTTP/1.1, its own process). Mock, load generator and gateway share the 2 cores.",
        "- Load average (1/5/15 min) around each part: "
        + "; ".join(f"{name} {p['loadavg_before']} → {p['loadavg_after']}" for name, p in parts.items()),
        "",
    ]
    lines += goals(parts)
    makers = {
        "gateway": gateway_tables,
        "local": local_tables,
        "ingest": ingest_tables,
        "judge": judge_tables,
        "cache": cache_tables,
        "guards": guards_tables,
        "injection": injection_tables,
        "mcp": mcp_tables,
        "otlp": otlp_tables,
        "cluster": cluster_tables,
        "start": start_tables,
        "console": console_start_tables,
        "live": live_tables,
    }
    for name, status in parts.items():
        if "result" in status:
            lines += makers[name](status["result"])
        else:
            lines += [f"## {name}: FAILED (exit {status['returncode']}); see the output of `make bench`", ""]
    lines += [
        "Time per part: " + ", ".join(f"{n} {p['elapsed_s']:.0f} s" for n, p in parts.items()) + ".",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="short rounds and small stores (a smoke run)")
    parser.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS))
    args = parser.parse_args()
    started = time.perf_counter()
    info = machine()
    parts = {part: run_part(part, args.quick) for part in args.only}
    total = time.perf_counter() - started
    (BENCH / "RESULTS.md").write_text(report(info, parts, total, args.quick))
    results = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": info,
        "total_s": total,
        "parts": parts,
    }
    (BENCH / "results.json").write_text(json.dumps(results, indent=2))
    print(f"wrote {BENCH / 'RESULTS.md'} and {BENCH / 'results.json'} in {total / 60:.1f} min")


if __name__ == "__main__":
    main()
