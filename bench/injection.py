"""The injection guard's cost per request: the patterns alone vs patterns + the MiniLM head.

Prompts: a seeded sample of the held-out set (tests/corpora/injection_heldout.jsonl, public
prompts, median ~50 characters) and the typical 1 KB and 2 KB support prompts of
tests/test_guards.py. Each prompt goes through the gateway's own functions as a one-message
chat request:

- `patterns`: `patterns_only()` (console/gateway/injection_guard.py), what a route with
  `injection_guard: patterns` runs;
- `combined`: `InjectionGuard.score()`, the default: patterns, MiniLM through llama.cpp on
  one thread, the head, the blend;
- `combined, repeated`: the same text again (a chat resends its earlier turns), served from
  the guard's cache of logits.

Every first measurement of a prompt is cold (the caches are cleared between the halves).
Rounds alternate patterns and combined per prompt, so load from elsewhere on the box hits
both alike. Prints p50 / p99 µs per prompt and writes bench/out/injection.json; never
asserts a time. Run alone: `.venv/bin/python bench/injection.py [--prompts 400]`.
"""

from __future__ import annotations

import argparse
import functools
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from test_guards import typical_prompt  # noqa: E402

from console.gateway.injection_guard import InjectionGuard, patterns_only  # noqa: E402
from console.guards import body as guard_body  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"
HELDOUT = REPO / "tests" / "corpora" / "injection_heldout.jsonl"


def request(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


def timed_us(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e6


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50_us": round(statistics.median(ordered), 1),
        "p99_us": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 1),
        "mean_us": round(statistics.fmean(ordered), 1),
    }


def measure(texts: list[str], guard: InjectionGuard) -> dict[str, Any]:
    rows: dict[str, list[float]] = {"patterns": [], "combined": [], "combined_repeated": []}
    for text in texts:
        body = request(text)
        guard_body._score_cached.cache_clear()
        rows["patterns"].append(timed_us(functools.partial(patterns_only, body, 0.7)))
        guard_body._score_cached.cache_clear()
        rows["combined"].append(timed_us(functools.partial(guard.score, body, 0.7)))
        rows["combined_repeated"].append(timed_us(functools.partial(guard.score, body, 0.7)))
    out: dict[str, Any] = {name: percentiles(values) for name, values in rows.items()}
    out["combined_over_patterns_p50"] = round(out["combined"]["p50_us"] / out["patterns"]["p50_us"], 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--prompts", type=int, default=400)
    parser.add_argument("--out", type=Path, default=OUT / "injection.json")
    args = parser.parse_args()
    items = [json.loads(line) for line in HELDOUT.read_text(encoding="utf-8").splitlines() if line.strip()]
    sample = [item["text"] for item in random.Random(17).sample(items, min(args.prompts, len(items)))]
    guard = InjectionGuard(Path(tempfile.mkdtemp()) / "models")
    guard.warm()
    result: dict[str, Any] = {
        "heldout_sample": {
            "prompts": len(sample),
            "median_chars": statistics.median(len(t) for t in sample),
            **measure(sample, guard),
        },
    }
    for size in (1024, 2048):
        prompts = [typical_prompt(size) + f" (ticket {n})" for n in range(20)]  # distinct texts: cold
        result[f"typical_{size}B"] = {"prompts": len(prompts), **measure(prompts, guard)}
    for name, row in result.items():
        print(f"{name}: {json.dumps(row)}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
