"""Shadow mode: a week of paraphrased questions with `cache: shadow`, the report an operator
reads (`fleetdeck query --name cache_shadow`), then the switch to `cache: on`, which serves
exactly the hits the shadow run predicted, from the same entries.

The default embedder (all-MiniLM-L6-v2) runs for real. The fake upstream echoes the last
user message, so an answer names the question it was given: a served answer shows which
question it belonged to.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from fakes.openai_upstream import FakeOpenAI
from gateway_process import Served, cache_entry, fleetdeck_serve, run_cli, stored_traces, trace_of

CORPUS = Path(__file__).parent / "corpora" / "paraphrases.jsonl"
THRESHOLD = 0.92

POLICY = """
providers:
  lab:
    kind: openai_compat
    base_url: "{url}"
    models: [mock-gpt]
    prices: {{mock-gpt: {{input: 1.0, output: 2.0}}}}
routes:
  - {{intent: support, primary: lab/mock-gpt, cache: {mode}, cache_threshold: {threshold}}}
"""


def pairs() -> list[dict[str, Any]]:
    """Corpus pairs whose questions each appear once, so every lookup has one possible entry."""
    rows = [json.loads(line) for line in CORPUS.read_text().splitlines() if line.strip()]
    seen: set[str] = set()
    chosen = []
    for row in rows:
        if row["a"] in seen or row["b"] in seen:
            continue
        seen |= {row["a"], row["b"]}
        chosen.append(row)
    return chosen


PAIRS = pairs()


def ask(served: Served, question: str) -> httpx.Response:
    response = httpx.post(
        f"{served.base_url}/chat/completions",
        json={
            "model": "route:support",
            "temperature": 0,
            "messages": [
                {"role": "system", "content": "You answer ACME customers in one sentence."},
                {"role": "user", "content": question},
            ],
        },
        headers=served.auth,
        timeout=60,
    )
    assert response.status_code == 200, response.text
    return response


def run(data_dir: Path, upstream: FakeOpenAI, mode: str, questions: list[str]) -> dict[str, httpx.Response]:
    policy = POLICY.format(url=upstream.base_url, mode=mode, threshold=THRESHOLD)
    with fleetdeck_serve(data_dir, policy) as served:
        answers = {}
        for question in questions:
            answers[question] = ask(served, question)
            indexed(served, answers[question])  # as the gap between real requests lets it
    return answers


def indexed(served: Served, response: httpx.Response) -> None:
    """Until the cache has indexed the entry of an answer it keeps (a miss; in shadow mode, a
    predicted miss): it indexes in the background, so the next question can find this one."""
    request_id = response.headers["x-fleetdeck-request-id"]
    trace = trace_of(served, request_id)
    if trace["cache"] == "miss" and trace["cache_shadow"] in (None, "miss"):
        cache_entry(served, request_id)


def by_question(data_dir: Path, answers: dict[str, httpx.Response]) -> dict[str, dict[str, Any]]:
    traces = {t["request_id"]: t for t in stored_traces(data_dir)}
    return {q: traces[r.headers["x-fleetdeck-request-id"]] for q, r in answers.items()}


@pytest.fixture(scope="module")
def shadow_then_on(
    upstream: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, dict[str, Any]], dict[str, dict[str, Any]], int]:
    data_dir = tmp_path_factory.mktemp("shadow") / "data"
    seeds, paraphrases = [p["a"] for p in PAIRS], [p["b"] for p in PAIRS]
    shadow = by_question(data_dir, run(data_dir, upstream, "shadow", seeds + paraphrases))
    upstream.reset()
    switched_answers = run(data_dir, upstream, '"on"', paraphrases)
    switched = by_question(data_dir, switched_answers)
    for question, response in switched_answers.items():
        switched[question]["answer"] = response.json()["choices"][0]["message"]["content"]
    return data_dir, shadow, switched, upstream.request_count


def test_shadow_mode_records_what_would_have_been_served_and_serves_nothing(
    shadow_then_on: tuple[Path, dict[str, dict[str, Any]], dict[str, dict[str, Any]], int],
) -> None:
    _, shadow, _, _ = shadow_then_on
    traces = [shadow[p["b"]] for p in PAIRS]
    assert all(t["status"] == "ok" and t["cache"] == "miss" for t in shadow.values())
    assert {t["cache_shadow"] for t in shadow.values()} <= {"miss", "semantic", "exact"}
    would = [t for t in traces if t["cache_shadow"] == "semantic"]
    assert len(would) >= 5
    seeds = {shadow[p["a"]]["request_id"]: p for p in PAIRS}
    for pair in PAIRS:
        t = shadow[pair["b"]]
        if t["cache_shadow"] == "semantic":
            assert t["cache_similarity"] >= THRESHOLD
            assert seeds[t["cache_entry"]] == pair  # the entry is its own pair's question
            assert pair["same"], f"would serve a different meaning: {pair}"


def test_the_report_gives_hit_rate_and_similarity_per_threshold(
    shadow_then_on: tuple[Path, dict[str, dict[str, Any]], dict[str, dict[str, Any]], int],
) -> None:
    data_dir, shadow, _, _ = shadow_then_on
    done = run_cli(data_dir, "query", "--name", "cache_shadow", "--format", "json")
    assert done.returncode == 0, done.stderr
    rows = {row["threshold"]: row for row in json.loads(done.stdout)}
    sims = [t["cache_similarity"] for t in shadow.values() if t["cache_similarity"] is not None]

    print(f"\ncache_shadow over {len(shadow)} lookups ({len(PAIRS)} seeds, then their paraphrases)")
    for threshold, row in sorted(rows.items()):
        mean = row["mean_similarity"]
        rate = f"hit rate {row['hit_rate']:.2f} ({row['would_hit']})"
        print(f"  ≥ {threshold:.2f}: {rate}, mean similarity {mean}")
    assert sorted(rows) == [0.75, 0.8, 0.85, 0.9, 0.92, 0.95, 0.98]
    rates = [rows[threshold]["hit_rate"] for threshold in sorted(rows)]
    assert rates == sorted(rates, reverse=True)
    assert rates[0] > rates[-1]
    for threshold, row in rows.items():
        assert row["lookups"] == len(shadow)
        assert row["would_hit"] == sum(1 for s in sims if s >= threshold)
        if row["would_hit"]:
            assert row["min_similarity"] >= threshold
            example = row["examples"][0]
            assert example["similarity"] == pytest.approx(row["min_similarity"])
            assert example["cached_question"] in example["would_serve"]  # the entry's answer
            assert example["question"] in example["model_answer"]
    at_route = rows[THRESHOLD]
    assert at_route["would_hit"] == sum(1 for t in shadow.values() if t["cache_shadow"] != "miss")


def test_switching_on_serves_the_hits_the_shadow_run_predicted(
    shadow_then_on: tuple[Path, dict[str, dict[str, Any]], dict[str, dict[str, Any]], int],
) -> None:
    _, shadow, switched, upstream_calls = shadow_then_on
    assert upstream_calls == 0  # every paraphrase is answered from the cache
    for pair in PAIRS:
        before, after = shadow[pair["b"]], switched[pair["b"]]
        assert after["status"] == "cached"
        if before["cache_shadow"] == "semantic":
            assert after["cache"] == "semantic"
            assert after["cache_entry"] == before["cache_entry"]
            assert after["cache_similarity"] == pytest.approx(before["cache_similarity"], abs=1e-4)
            assert pair["a"] in after["answer"]  # the seed's answer, as the report said
        else:  # a predicted miss was answered by the model in shadow mode, and kept
            assert (after["cache"], after["cache_entry"]) == ("exact", before["request_id"])
        assert after["cost_usd"] == 0
        assert after["cache_saved_usd"] > 0
