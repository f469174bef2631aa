"""The response cache: lookup latency at 10,000 and 100,000 entries, and a hit end to end
against a miss through the local model.

1. Index: one scope's usearch HNSW index (console.gateway.cache_index.ScopeIndex) filled with N
   unit vectors of 384 dimensions (all-MiniLM-L6-v2's size) drawn around 2,000 topics, and
   queried with perturbed copies of stored vectors: p50/p99 of `nearest()` and its recall@1
   against an exact scan. Random vectors are the hard case for HNSW; real traffic clusters.
2. Lookup: `ResponseCache.lookup()` on the same store (keys, exact probe, index search,
   anchor check) with the embedding precomputed, so it times the cache and not the model.
3. End to end: `fleetdeck serve` with a route on the local model and `cache: on` (the
   default embedder, MiniLM): questions answered by the model (misses), the same again
   (exact hits) and paraphrases (semantic hits), latency seen by the client.
4. The paraphrase test (tests/corpora/paraphrases.jsonl): precision and recall per
   embedder at the default threshold.

Run alone: `.venv/bin/python bench/cache.py [--sizes 10000 100000]`; writes bench/out/cache.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gateway import OUT, REPO
from local_inference import start_fleetdeck

from console.gateway import minilm
from console.gateway.cache import Entry, ResponseCache, anchors_agree
from console.gateway.cache_index import ScopeIndex
from console.gateway.embedders import GgufEmbedder, LexicalEmbedder, Vector
from console.policy import DEFAULT_CACHE_THRESHOLD, parse_policy

DIMENSIONS = 384
TOPICS = 2000
QUERIES = 2000
CORPUS = REPO / "tests" / "corpora" / "paraphrases.jsonl"


def percentiles(samples_s: list[float], cpu_s: list[float] | None = None) -> dict[str, float]:
    """Wall-time percentiles; with `cpu_s`, the thread's CPU time too, which load on a shared
    box does not inflate (a lookup preempted half-way is slow on the wall, not on the CPU)."""
    ordered = sorted(samples_s)
    out = {
        "p50_ms": ordered[len(ordered) // 2] * 1000,
        "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
        "mean_ms": statistics.fmean(ordered) * 1000,
    }
    if cpu_s:
        cpu = sorted(cpu_s)
        out["cpu_p50_ms"] = cpu[len(cpu) // 2] * 1000
        out["cpu_p99_ms"] = cpu[min(len(cpu) - 1, int(len(cpu) * 0.99))] * 1000
    return out


def vectors(n: int, rng: np.random.Generator) -> np.ndarray[Any, np.dtype[np.float32]]:
    topics = rng.standard_normal((TOPICS, DIMENSIONS)).astype(np.float32)
    points = topics[rng.integers(0, TOPICS, n)] + 0.6 * rng.standard_normal((n, DIMENSIONS)).astype(
        np.float32
    )
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    return points


def near(stored: np.ndarray[Any, Any], rng: np.random.Generator) -> list[Vector]:
    """Paraphrase-like queries: a stored vector moved to cosine ≈ 0.98."""
    picks = stored[rng.integers(0, len(stored), QUERIES)]
    noisy = picks + 0.01 * rng.standard_normal(picks.shape).astype(np.float32)
    return list(noisy / np.linalg.norm(noisy, axis=1, keepdims=True))


def unrelated(rng: np.random.Generator) -> list[Vector]:
    """New questions: points of the same distribution, near nothing stored."""
    return list(vectors(QUERIES, rng))


def bench_index(n: int) -> dict[str, Any]:
    rng = np.random.default_rng(n)
    stored = vectors(n, rng)
    index = ScopeIndex(DIMENSIONS)
    started = time.perf_counter()
    index.add_many(list(range(n)), [f"e{i}" for i in range(n)], stored)
    build_s = time.perf_counter() - started
    queries = near(stored, rng)
    for q in queries[:50]:
        list(index.nearest(q, 8))
    # The exact answers first, in one batch: BLAS threads left spinning after a scan would
    # slow the timed searches that follow.
    batch = np.stack(queries)
    exact = np.concatenate(
        [np.argmax(batch[i : i + 200] @ stored.T, axis=1) for i in range(0, len(batch), 200)]
    )
    times, cpu, found = [], [], 0
    for q, truth in zip(queries, exact, strict=True):
        t0, c0 = time.perf_counter(), time.thread_time()
        best = next(index.nearest(q, 8), None)
        times.append(time.perf_counter() - t0)
        cpu.append(time.thread_time() - c0)
        found += best is not None and best[0] == f"e{int(truth)}"
    stats = percentiles(times, cpu)
    print(f"  index {n:>7,}: nearest {stats}, recall@1 {found / len(queries):.3f}", flush=True)
    return {"entries": n, "build_s": build_s, "recall_at_1": found / len(queries), **stats}


class _Fixed:
    """An embedder that returns the vector the bench gives it: times the cache, not a model."""

    name = "fixed"

    def __init__(self) -> None:
        self.next: Vector | None = None

    async def embed(self, text: str) -> Vector:
        assert self.next is not None
        return self.next


def bench_lookup(n: int) -> dict[str, Any]:
    rng = np.random.default_rng(n + 1)
    stored = vectors(n, rng)
    route = parse_policy(
        "providers: {local: {kind: local}}\n"
        "routes: [{intent: r, primary: local/smollm2-135m, cache: 'on', cache_embedder: lexical}]"
    ).routes[0]
    cache = ResponseCache(None, Path(tempfile.mkdtemp()))
    fixed = _Fixed()
    cache._embedders["lexical"] = fixed  # the route's embedder, swapped for precomputed vectors

    def body(i: int) -> dict[str, Any]:
        return {"temperature": 0, "messages": [{"role": "user", "content": f"question {i}"}]}

    async def fill_and_time() -> tuple[dict[str, list[float]], dict[str, list[float]], dict[str, int]]:
        expires = time.time() + 3600
        entries = []
        for i in range(n):
            fixed.next = stored[i]
            lookup = await cache.lookup(route, "local/smollm2-135m", body(i), {}, "dev")
            assert lookup is not None and lookup.scope is not None
            entry = Entry(
                f"e{i}", lookup.exact_key, lookup.scope, "r", {}, None, 0.001, expires, "question", stored[i]
            )
            cache._entries[entry.entry_id] = entry
            cache._exact[entry.exact_key] = entry.entry_id
            entries.append(entry)
        cache._index_loaded(entries)
        wall: dict[str, list[float]] = {"exact": [], "semantic": [], "miss": []}
        cpu: dict[str, list[float]] = {"exact": [], "semantic": [], "miss": []}
        kinds: dict[str, int] = {}
        paraphrase = {"temperature": 0, "messages": [{"role": "user", "content": "a paraphrased question"}]}
        for i, (q, new) in enumerate(zip(near(stored, rng), unrelated(rng), strict=True)):
            for phase, vector, request in (
                ("semantic", q, paraphrase),
                ("miss", new, paraphrase),
                ("exact", q, body(i)),
            ):
                fixed.next = vector
                t0, c0 = time.perf_counter(), time.thread_time()
                found = await cache.lookup(route, "local/smollm2-135m", request, {}, "dev")
                wall[phase].append(time.perf_counter() - t0)
                cpu[phase].append(time.thread_time() - c0)
                kind = f"{phase}->{found.kind if found else None}"
                kinds[kind] = kinds.get(kind, 0) + 1
        return wall, cpu, kinds

    wall, cpu, kinds = asyncio.run(fill_and_time())
    result: dict[str, Any] = {"entries": n, "served_as": kinds}
    result |= {phase: percentiles(wall[phase], cpu[phase]) for phase in wall}
    print(f"  lookup {n:>7,}: {result}", flush=True)
    return result


POLICY = """
providers:
  local: {kind: local}
routes:
  - {intent: support, primary: local/smollm2-135m, cache: "on", max_retries: 0}
default_route: support
"""

QUESTIONS = [
    ("How do I reset my password?", "What are the steps to reset my password?"),
    ("How do I cancel my subscription?", "How can I cancel my subscription plan?"),
    ("What is the capital of France?", "Which city is the capital of France?"),
    ("Who wrote Pride and Prejudice?", "Who is the author of Pride and Prejudice?"),
    ("How do I reverse a list in Python?", "What's the way to reverse a Python list?"),
    ("What is the difference between TCP and UDP?", "How does TCP differ from UDP?"),
    ("Explain what a mutex is.", "What is a mutex?"),
    ("Translate this sentence into French.", "Please translate this sentence to French."),
]


def bench_end_to_end(max_tokens: int) -> dict[str, Any]:
    import os

    with tempfile.TemporaryDirectory(prefix="fleetdeck-cache-") as tmp:
        policy = Path(tmp) / "routes.yaml"
        policy.write_text(POLICY)
        os.environ["FLEETDECK_POLICY_FILE"] = str(policy)
        server, url, key = start_fleetdeck(Path(tmp))
        try:
            with httpx.Client(timeout=600, headers={"Authorization": f"Bearer {key}"}) as client:

                def ask(text: str) -> tuple[float, str]:
                    body = {
                        "model": "route:support",
                        "temperature": 0,
                        "max_tokens": max_tokens,
                        "messages": [{"role": "user", "content": text}],
                    }
                    t0 = time.perf_counter()
                    response = client.post(f"{url}/v1/chat/completions", json=body)
                    elapsed = time.perf_counter() - t0
                    response.raise_for_status()
                    return elapsed, response.headers.get("x-fleetdeck-cache", "miss")

                ask("warm up the model and the embedder")
                result: dict[str, list[float]] = {"miss": [], "exact": [], "semantic": []}
                kinds: dict[str, list[str]] = {"miss": [], "exact": [], "semantic": []}
                for phase, pick in (("miss", 0), ("exact", 0), ("semantic", 1)):
                    for pair in QUESTIONS:
                        elapsed, kind = ask(pair[pick])
                        result[phase].append(elapsed)
                        kinds[phase].append(kind)
                        time.sleep(0.05)
        finally:
            server.stop()
            os.environ.pop("FLEETDECK_POLICY_FILE", None)
    out = {phase: {**percentiles(times), "served_as": kinds[phase]} for phase, times in result.items()}
    out["max_tokens"] = max_tokens  # type: ignore[assignment]
    for phase in ("exact", "semantic"):
        print(f"  end to end {phase}: {out[phase]}, miss {out['miss']['p50_ms']:.0f} ms p50", flush=True)
    return out


def paraphrase_scores() -> dict[str, Any]:
    pairs = [json.loads(line) for line in CORPUS.read_text().splitlines() if line.strip()]
    models = Path(tempfile.mkdtemp())
    embedders = {
        "lexical": LexicalEmbedder(),
        "minilm": GgufEmbedder(minilm.gguf_path(models), name="minilm"),
    }
    scores = {}
    for name, embedder in embedders.items():
        tp = fp = 0
        for pair in pairs:
            a, b = embedder.embed_now(pair["a"]), embedder.embed_now(pair["b"])
            served = float(a @ b) >= DEFAULT_CACHE_THRESHOLD and anchors_agree(pair["a"], pair["b"])
            tp += served and pair["same"]
            fp += served and not pair["same"]
        positives = sum(1 for p in pairs if p["same"])
        scores[name] = {
            "precision": tp / (tp + fp) if tp + fp else 1.0,
            "recall": tp / positives,
            "true_positives": tp,
            "false_positives": fp,
        }
    print(f"  paraphrases: {scores}", flush=True)
    return {"pairs": len(pairs), "threshold": DEFAULT_CACHE_THRESHOLD, "embedders": scores}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--out", type=Path, default=OUT / "cache.json")
    args = parser.parse_args()
    started = time.perf_counter()
    result = {
        "index": [bench_index(n) for n in args.sizes],
        "lookup": [bench_lookup(n) for n in args.sizes],
        "end_to_end": bench_end_to_end(args.max_tokens),
        "paraphrases": paraphrase_scores(),
        "loadavg": Path("/proc/loadavg").read_text().strip(),
    }
    result["elapsed_s"] = time.perf_counter() - started
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
