"""The guards on the request path: how long PII scanning and injection scoring take.

1. `scan()` and `injection_score()` on a typical 1 KB and 2 KB support prompt (one e-mail
   address, one phone number, runbook text: tests/test_guards.py's `typical_prompt`,
   whose findings that file asserts): the best of 5 rounds of 200 calls, µs per call.
2. `injection_score()` over the whole injection corpus (tests/corpora/injection.jsonl):
   mean µs per text.
3. A calibration loop (`sum(range(1000))`), so a run on a slower or busier box can be
   read against another.

Prints the numbers and writes bench/out/guards.json; never asserts a time.
Run alone: `.venv/bin/python bench/guards.py [--rounds 5] [--calls 200]`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from test_guards import INJECTION, typical_prompt

from console.guards import injection_score, scan

OUT = Path(__file__).resolve().parent / "out"


def best_us(fn: Callable[[str], object], text: str, rounds: int, calls: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            fn(text)
        best = min(best, (time.perf_counter() - start) / calls)
    return round(best * 1e6, 1)


def measure(rounds: int, calls: int) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    for size in (1024, 2048):
        prompt = typical_prompt(size)
        for name, fn in (("scan", scan), ("injection_score", injection_score)):
            rows[f"{name}_{size}B_us"] = best_us(fn, prompt, rounds, calls)
    start = time.perf_counter()
    for item in INJECTION:
        injection_score(item["text"], item["source"])
    rows["injection_corpus_mean_us"] = round((time.perf_counter() - start) / len(INJECTION) * 1e6, 1)
    rows["injection_corpus_texts"] = len(INJECTION)
    start = time.perf_counter()
    for _ in range(1000):
        sum(range(1000))
    rows["calibration_sum_range_1000_us"] = round((time.perf_counter() - start) / 1000 * 1e6, 2)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--out", type=Path, default=OUT / "guards.json")
    args = parser.parse_args()
    rows = measure(args.rounds, args.calls)
    for name, value in rows.items():
        print(f"{name:32} {value}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
