"""Golden sets: the file, the asserts, the gate, `eval run` through a real gateway, and harvest."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from fakes.openai_upstream import FakeOpenAI
from gateway_process import REPO, Served

from console.engine import Engine
from console.gateway.admin import AdminEndpoint
from console.quality import golden
from console.quality.asserts import Answer, check, similarity
from console.quality.golden import Assertion, Baseline, GoldenSetError
from console.settings import Settings
from console.store import importer
from console.store.seed import sample_traces_dir

EXAMPLES = REPO / "examples" / "golden"


def fleetdeck(data_dir: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """The CLI in a child process; runs through the local model take longer than run_cli allows."""
    return subprocess.run(
        [sys.executable, "-m", "console", *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=timeout,
        check=False,
    )


def stored(data_dir: Path, sql: str) -> list[dict[str, Any]]:
    with Engine(Settings(data_dir=data_dir)) as engine:
        rows: list[dict[str, Any]] = engine.db.cursor().sql(sql).to_arrow_table().to_pylist()
    return rows


# -- asserts ------------------------------------------------------------------------------


def verdict(kind: str, text: str, value: Any) -> bool:
    assertion = Assertion.model_validate({"type": kind, "value": value})
    return check(
        assertion, Answer(text, 200, "r1"), lambda rubric, output: ("Paris" in output, "names it")
    ).passed


@pytest.mark.parametrize(
    ("kind", "value", "passes", "fails"),
    [
        ("equals", "Paris", " Paris\n", "Paris, France"),
        ("equals", {"a": 1}, '{ "a": 1 }', '{"a": 2}'),
        ("contains", "Paris", "It is Paris.", "It is paris."),
        ("icontains", "PARIS", "It is paris.", "It is Lyon."),
        ("regex", r"\b\d{3}-\d{4}\b", "Call 555-0199", "Call 5550199"),
        ("is-json", None, '{"a": [1]}', "```json\n{}\n```"),
        ("json-schema", {"type": "object", "required": ["total"]}, '{"total": 3}', '{"sum": 3}'),
        ("similar", "the capital of France is Paris", "Paris is the capital of France", "I like trains"),
        ("llm-rubric", "names the capital", "Paris", "Lyon"),
        ("not-contains", "sorry", "Paris.", "I am sorry."),
    ],
)
def test_each_assert_passes_and_fails(kind: str, value: Any, passes: str, fails: str) -> None:
    assert verdict(kind, passes, value)
    assert not verdict(kind, fails, value)


def test_cost_and_latency_read_the_trace_numbers() -> None:
    cheap = Answer("ok", 200, "r1", cost_usd=0.001, latency_ms=300)
    costly = Answer("ok", 200, "r2", cost_usd=0.02, latency_ms=3000)
    unpriced = Answer("ok", 200, "r3")
    for kind, limit in (("cost", 0.01), ("latency", 1000)):
        assertion = Assertion(type=kind, threshold=limit)
        results = [check(assertion, answer, lambda r, o: (True, "")) for answer in (cheap, costly, unpriced)]
        assert [r.passed for r in results] == [True, False, False]
        assert "has no" in results[2].reason


def test_an_error_answer_fails_every_assert_naming_the_error() -> None:
    failed = Answer(None, 502, "r1", "upstream_error: bad gateway")
    result = check(Assertion(type="not-contains", value="x"), failed, lambda r, o: (True, ""))
    assert not result.passed and "502 upstream_error: bad gateway" in result.reason


def test_similarity_is_the_cosine_of_word_counts() -> None:
    assert similarity("a b", "b a") == pytest.approx(1.0)
    assert similarity("a b", "c d") == 0.0
    assert similarity("a a b", "a b") == pytest.approx(3 / (5**0.5 * 2**0.5))


# -- the file ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("tests: []", "tests: List should have at least 1 item"),
        ("tests: [{input: hi, assert: [{type: smells-nice}]}]", "unknown assert type 'smells-nice'"),
        ("tests: [{input: hi, assert: [{type: contains}]}]", "assert 'contains' needs a value"),
        ("tests: [{input: hi, assert: [{type: cost}]}]", "needs a threshold (USD)"),
        ("tests: [{input: hi, assert: [{type: regex, value: '(('}]}]", "is not a regular expression"),
        ("tests: [{assert: []}]", "either `input`"),
        ("threshold: 2\ntests: [{input: hi}]", "threshold: Input should be less than or equal to 1"),
        ("tests: [{input: hi, asert: []}]", "asert: Extra inputs are not permitted"),
        ("- just a list", "expected a mapping"),
        ("tests: [", "not valid YAML"),
    ],
)
def test_bad_files_are_refused_naming_the_problem(tmp_path: Path, content: str, problem: str) -> None:
    path = tmp_path / "set.yaml"
    path.write_text(content)
    with pytest.raises(GoldenSetError, match=r"set\.yaml") as refused:
        golden.load(path)
    assert problem in str(refused.value)


def test_default_test_merges_into_every_case(tmp_path: Path) -> None:
    path = tmp_path / "faq.yaml"
    path.write_text(
        "defaultTest: {vars: {a: 1, b: 2}, options: {temperature: 0}, assert: [{type: is-json}]}\n"
        "tests:\n  - {input: hi, vars: {b: 3}, assert: [{type: contains, value: x}], threshold: 0.5}\n"
    )
    loaded = golden.load(path)
    (case,) = loaded.cases()
    assert loaded.name == "faq"
    assert case.vars == {"a": 1, "b": 3} and case.options == {"temperature": 0}
    assert [a.type for a in case.asserts] == ["is-json", "contains"] and case.threshold == 0.5


def test_the_gate_holds_the_threshold_and_the_last_passing_run() -> None:
    last = Baseline("run-1", 0.9, "v1", datetime(2026, 11, 1))
    assert golden.gate(0.8, 0.75, None).passed
    assert golden.gate(0.75, 0.75, None).passed
    below = golden.gate(0.7, 0.75, None)
    assert not below.passed and below.reasons == ["pass rate 70% is below the gate 75%"]
    worse = golden.gate(0.8, 0.75, last)
    assert not worse.passed and "last passing run run-1 (v1): 90%" in worse.reasons[0]
    assert golden.gate(0.9, None, last).passed


# -- acceptance: a good prompt passes, a worse version fails the gate (local model) ----------


def test_a_worse_prompt_version_fails_the_gate_with_the_local_model(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    for version in ("v1", "v2"):
        template = EXAMPLES / "prompts" / f"support_faq_{version}.txt"
        assert fleetdeck(data_dir, "prompts", "add", "support_faq", str(template)).returncode == 0
    golden_set = str(EXAMPLES / "support_faq.yaml")

    good = fleetdeck(data_dir, "eval", "run", golden_set, "--prompt", "support_faq@v1")
    assert good.returncode == 0, good.stdout + good.stderr
    assert "4/4 passed" in good.stdout and "Gate passed" in good.stdout

    worse = fleetdeck(data_dir, "eval", "run", golden_set, "--prompt", "support_faq@v2")
    assert worse.returncode == 1, worse.stdout + worse.stderr
    assert "Gate FAILED" in worse.stdout and "below the gate 75%" in worse.stdout
    assert "below the last passing run" in worse.stdout

    unknown = fleetdeck(data_dir, "eval", "run", golden_set, "--prompt", "support_faq@v9")
    assert unknown.returncode == 2 and "version 'v9' does not exist" in unknown.stderr

    runs = stored(
        data_dir,
        "SELECT golden_set, prompt_name, prompt_version, route, cases, passed, gate_passed, report "
        "FROM eval_runs ORDER BY started_at",
    )
    assert [(r["prompt_version"], r["passed"], r["gate_passed"]) for r in runs] == [
        ("v1", 4, True),
        ("v2", 0, False),
    ]
    assert {(r["golden_set"], r["prompt_name"], r["route"], r["cases"]) for r in runs} == {
        ("support-faq", "support_faq", "route:general", 4)
    }
    report = orjson.loads(runs[1]["report"])
    assert report["baseline"]["prompt_version"] == "v1" and len(report["cases"]) == 4
    traces = stored(
        data_dir,
        "SELECT workflow_id, prompt_name, prompt_version, count(*) AS n FROM traces "
        "WHERE prompt_name IS NOT NULL GROUP BY ALL ORDER BY prompt_version",
    )
    assert [(t["workflow_id"], t["prompt_version"], t["n"]) for t in traces] == [
        ("fleetdeck-eval", "v1", 4),
        ("fleetdeck-eval", "v2", 4),
        ("fleetdeck-eval", "v9", 1),
    ]
    audited = stored(
        data_dir, "SELECT subject, payload FROM audit_log WHERE action = 'eval.run' ORDER BY seq"
    )
    assert [orjson.loads(a["payload"])["prompt"] for a in audited] == ["support_faq@v1", "support_faq@v2"]
    assert {a["subject"] for a in audited} == {"golden:support-faq"}


# -- through a running instance ---------------------------------------------------------------

POLICY = """
providers:
  lab: {{kind: openai_compat, base_url: "{url}", prices: {{m: {{input: 1, output: 1}}}}}}
  local: {{kind: local, model_path: default, model_name: smollm2-135m}}
routes:
  - {{intent: echo, primary: lab/m, max_retries: 0}}
  - {{intent: general, primary: local/smollm2-135m, max_retries: 0}}
default_route: echo
"""


@pytest.fixture(scope="module")
def policy(upstream: FakeOpenAI) -> str:
    return POLICY.format(url=upstream.base_url)


def test_a_run_against_a_running_instance_is_stored_through_it(served: Served, tmp_path: Path) -> None:
    path = tmp_path / "echo.yaml"
    path.write_text(
        "name: echo\nroute: route:echo\nthreshold: 1\n"
        "tests:\n"
        "  - input: the answer is {{n}}\n    vars: {n: 42}\n"
        "    assert: [{type: contains, value: '42'}, {type: cost, threshold: 0.01},\n"
        "             {type: latency, threshold: 60000}]\n"
        "  - input: reply in French\n"
        "    assert: [{type: llm-rubric, value: The answer is written in French}]\n"
        "    threshold: 0\n"
    )
    ran = fleetdeck(served.data_dir, "eval", "run", str(path), "--out", str(tmp_path / "report.json"))
    assert ran.returncode == 0, ran.stdout + ran.stderr
    report = orjson.loads((tmp_path / "report.json").read_bytes())
    first, rubric = orjson.loads(report["report"])["cases"]
    assert first["passed"] and first["answer"] == "the answer is 42"  # the fake echoes; vars filled the input
    assert first["cost_usd"] > 0 and first["latency_ms"] > 0  # read from the trace
    (graded,) = rubric["asserts"]
    assert graded["reason"].startswith("judge: ") and "not a grade" not in graded["reason"]
    endpoint = AdminEndpoint.find(served.data_dir)
    assert endpoint is not None
    runs = endpoint.query({"sql": "SELECT run_id, gate_passed FROM eval_runs"}).to_pylist()
    assert runs == [{"run_id": report["run_id"], "gate_passed": True}]
    sql = "SELECT count(*) AS n FROM traces WHERE workflow_id = 'fleetdeck-eval' AND parent_id IS NOT NULL"
    judged = endpoint.query({"sql": sql}).to_pylist()
    assert judged == [{"n": 1}]  # the rubric's judge call, a trace whose parent is the graded call


# -- acceptance: harvest → run → gate on the sample traces ----------------------------------------


def test_harvest_run_and_gate_end_to_end_on_the_sample_traces(tmp_path: Path, upstream: FakeOpenAI) -> None:
    data_dir = tmp_path / "data"
    with Engine(Settings(data_dir=data_dir)) as engine:
        importer.import_files(engine.db.cursor(), [sample_traces_dir()])
    harvested = tmp_path / "hard-invoices.yaml"
    made = fleetdeck(
        data_dir, "eval", "harvest", "--workflow", "invoice_parsing", "--verdict", "incorrect",
        "--limit", "2", "--out", str(harvested),
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    document = yaml.safe_load(harvested.read_text())
    assert document["route"] == "route:extract_invoice" and len(document["tests"]) == 2
    for case in document["tests"]:
        assert case["metadata"]["verdict"] == "incorrect" and case["metadata"]["prompt"].startswith(
            "invoice_extract@"
        )
        assert case["messages"][-1]["content"].startswith("INVOICE INV-")
        assert [a["type"] for a in case["assert"]] == ["json-schema", "not-equals"]
        assert case["options"]["response_format"]["type"] == "json_schema"

    # The local model answers under the requested schema (llama.cpp grammar): the set passes.
    passing = fleetdeck(data_dir, "eval", "run", str(harvested))
    assert passing.returncode == 0, passing.stdout + passing.stderr
    assert "2/2 passed" in passing.stdout

    # A route that answers prose fails the schema asserts: below the gate and the last passing run.
    policy = tmp_path / "routes.yaml"
    policy.write_text(POLICY.format(url=upstream.base_url))
    failing = fleetdeck(
        data_dir, "eval", "run", str(harvested), "--route", "route:echo", "--policy", str(policy)
    )
    assert failing.returncode == 1, failing.stdout + failing.stderr
    assert "0/2 passed" in failing.stdout and "below the gate 80%" in failing.stdout
    assert "below the last passing run" in failing.stdout

    refused = fleetdeck(
        data_dir, "eval", "harvest", "--workflow", "support_triage", "--out", str(tmp_path / "x.yaml")
    )
    assert refused.returncode == 2 and "none with a payload" in refused.stderr


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda path: path.name)
def test_the_examples_are_valid_golden_sets(path: Path) -> None:
    assert golden.load(path).cases()
