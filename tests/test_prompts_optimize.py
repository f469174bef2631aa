"""`fleetdeck prompts optimize`: the search's parts, and whole searches through a real `fleetdeck serve`.

The optimizer upstream is the fake OpenAI server with a responder: it proposes edits, and the
model under test answers according to the system prompt it is sent, so the loop (not a model)
decides what happens. One search runs with the bundled local model answering the cases.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
from fakes.openai_upstream import FakeOpenAI
from gateway_process import REPO, Served, stored_traces
from terminal import on_terminal

from console.commands import prompts_optimize as command
from console.gateway.admin import AdminEndpoint
from console.quality import golden
from console.quality.optimize import (
    Candidate,
    CaseOutcome,
    Proposal,
    Scored,
    Search,
    SearchLimits,
    StepFailed,
    adoptable,
    dominates,
    pareto_front,
    split,
)
from console.settings import Settings

EXAMPLES = REPO / "examples" / "golden"
SIGNATURE = "Sign every answer with: Acme Support."
V1 = "You are the support assistant of Acme. Answer briefly."
QUESTIONS = [
    "Where is my parcel?",
    "Can I change my address?",
    "Do you ship abroad?",
    "How do I reset my password?",
    "Is there a student discount?",
    "Can I pay by invoice?",
]


# -- the search's parts ---------------------------------------------------------------------


def scored(label: str, train: Sequence[bool], held: Sequence[bool] = (), cost: float = 0.0) -> Scored:
    cases = [CaseOutcome(n, passed, cost_usd=cost / max(len(train), 1)) for n, passed in enumerate(train, 1)]
    held_cases = [CaseOutcome(100 + n, passed) for n, passed in enumerate(held, 1)]
    return Scored(Candidate(label, f"template {label}"), tuple(cases), tuple(held_cases))


def test_the_pareto_front_keeps_what_nothing_beats_on_pass_rate_and_cost() -> None:
    cheap_bad = scored("a", [True, False], cost=0.001)
    dear_good = scored("b", [True, True], cost=0.01)
    dear_bad = scored("c", [True, False], cost=0.02)
    cheap_good = scored("d", [True, True], cost=0.001)
    assert dominates(dear_good, dear_bad) and not dominates(cheap_bad, dear_good)
    assert pareto_front([cheap_bad, dear_good, dear_bad]) == [cheap_bad, dear_good]
    assert pareto_front([cheap_bad, dear_good, dear_bad, cheap_good]) == [cheap_good]


def test_the_split_is_seeded_and_keeps_a_case_on_each_side() -> None:
    train, held = split(10, 0.3, seed=1)
    assert len(held) == 3 and sorted([*train, *held]) == list(range(1, 11))
    assert split(10, 0.3, seed=1) == (train, held) and split(10, 0.3, seed=2) != (train, held)
    assert split(2, 0.0) == ([2], [1]) or split(2, 0.0) == ([1], [2])
    assert split(1, 0.5) == ([1], [])


def test_a_candidate_that_learns_the_train_cases_but_loses_held_out_ones_is_not_adopted() -> None:
    baseline = scored("v1", [False, False], [True, False])
    overfit = scored("r1c1", [True, True], [False, False])
    better = scored("r1c2", [True, False], [True, True])
    same = scored("r1c3", [True, True], [True, False])
    assert not adoptable(overfit, baseline)
    assert adoptable(better, baseline) and adoptable(same, baseline)
    assert not adoptable(scored("r1c4", [False, False], [True, False]), baseline)


class FakePort:
    """Scores a template by the marks it carries: `+N` passes train case N, `hN` held-out case N."""

    def __init__(self, proposals: list[list[str]], bound: float = 0.01, cost: float = 0.004) -> None:
        self.proposals, self.bound, self.cost = proposals, bound, cost
        self.paid = 0.0
        self.shown: list[list[int]] = []

    def evaluate(self, template: str, cases: Sequence[int]) -> list[CaseOutcome]:
        self.paid += self.cost
        return [CaseOutcome(n, f"+{n}" in template.split(), cost_usd=self.cost / len(cases)) for n in cases]

    def evaluation_bound(self, template: str, cases: Sequence[int]) -> float:
        return self.bound

    def propose(self, parent: Scored, count: int) -> list[Proposal]:
        self.paid += self.cost
        self.shown.append([case.number for case in parent.failures()])
        return [Proposal(text, f"why {text}") for text in self.proposals.pop(0)] if self.proposals else []

    def proposal_bound(self, parent: Scored, count: int) -> float:
        return self.bound

    def spent(self) -> float:
        return self.paid


def test_the_search_stops_before_a_step_that_could_pass_the_budget() -> None:
    port = FakePort([["+1", "+1 +2", "+1 +2 +3"]], bound=0.01, cost=0.006)
    search = Search(port, SearchLimits(rounds=5, candidates=3, budget_usd=0.03), [1, 2, 3], [4])
    outcome = search.run("v1 text", "v1")
    # v1 (bound .01 on 0 spent), the optimizer (on .006), r1c1 (.012), r1c2 (.018) fit;
    # r1c3 (.01 on .024) does not.
    assert outcome.stop.kind == "budget" and "scoring r1c3" in outcome.stop.why
    assert [s.candidate.label for s in outcome.scored] == ["v1", "r1c1", "r1c2"]
    assert outcome.spent_usd == pytest.approx(0.024) and outcome.spent_usd <= 0.03
    assert port.shown == [[1, 2, 3]]  # train failures only: held-out case 4 is never shown
    # No worse on held-out case 4 (failed by all), better on train: r1c2 is kept.
    assert outcome.best is not None and outcome.best.candidate.label == "r1c2"


def test_the_search_stops_when_no_candidate_improves_and_skips_repeats() -> None:
    port = FakePort([["+1", "v1 text"], ["+2", "+3"]])
    outcome = Search(port, SearchLimits(rounds=3, candidates=2, budget_usd=1), [1, 2], []).run(
        "v1 text", "v1"
    )
    assert [s.candidate.label for s in outcome.scored] == ["v1", "r1c1", "r2c1", "r2c2"]
    assert outcome.stop.kind == "no-improvement" and outcome.rounds == 2
    assert any("repeats" in event for event in outcome.events)
    assert port.shown == [[1, 2], [2]]  # round 2 starts from r1c1, the front's best
    assert outcome.best is not None and outcome.best.candidate.label == "r1c1"


def test_the_search_stops_once_every_train_case_passes() -> None:
    port = FakePort([["+1 +2"]])
    outcome = Search(port, SearchLimits(rounds=3, candidates=1, budget_usd=1), [1, 2], []).run(
        "v1 text", "v1"
    )
    assert outcome.stop.kind == "solved" and outcome.rounds == 2 and len(port.shown) == 1


def test_a_failed_optimizer_call_stops_the_search_keeping_what_was_scored() -> None:
    class Refusing(FakePort):
        def propose(self, parent: Scored, count: int) -> list[Proposal]:
            if self.shown:
                raise StepFailed("the optimizer route:x failed (429): budget exceeded")
            return super().propose(parent, count)

    port = Refusing([["+1"], ["+1 +2"]])
    outcome = Search(port, SearchLimits(rounds=3, candidates=1, budget_usd=1), [1, 2], []).run(
        "v1 text", "v1"
    )
    assert outcome.stop.kind == "error" and "429" in outcome.stop.why and outcome.rounds == 2
    assert outcome.best is not None and outcome.best.candidate.label == "r1c1"


def test_the_optimizers_answer_is_parsed_leniently() -> None:
    text = 'Sure: {"candidates": [{"reasoning": "r", "prompt": " New "}, {"prompt": ""}, 3]} done'
    assert command.parse_proposals(text) == [Proposal("New", "r")]
    assert command.parse_proposals("no JSON here") == []
    assert command.parse_proposals(None) == []


# -- through a real fleetdeck serve -----------------------------------------------------------

POLICY = """
providers:
  lab:
    kind: openai_compat
    base_url: "{url}"
    prices: {{m: {{input: 1, output: 1}}, opt: {{input: 2, output: 2}}}}
  local: {{kind: local, model_path: default, model_name: smollm2-135m}}
routes:
  - {{intent: support, primary: lab/m, max_retries: 0}}
  - {{intent: optimizer, primary: lab/opt, max_retries: 0}}
  - {{intent: general, primary: local/smollm2-135m, max_retries: 0}}
default_route: support
"""


def _system(body: dict[str, Any]) -> str:
    messages = body.get("messages") or []
    first = messages[0] if messages else {}
    return str(first.get("content")) if first.get("role") == "system" else ""


def respond(body: dict[str, Any]) -> str | None:
    """The optimizer proposes a useless edit and the missing instruction; `m` obeys the system prompt."""
    system = _system(body)
    if body.get("model") == "opt":
        base = V1 if "<<<" in str(body["messages"][-1]["content"]) else ""
        if "brief and friendly" in str(body["messages"][-1]["content"]):
            facts = (EXAMPLES / "prompts" / "support_faq_v1.txt").read_text().strip()
            return orjson.dumps(
                {"candidates": [{"reasoning": "the answers need the facts", "prompt": facts}]}
            ).decode()
        candidates = [
            {"reasoning": "shorter answers", "prompt": f"{base} Be very brief."},
            {
                "reasoning": "the failing checks want the signature 'Acme Support'",
                "prompt": f"{base} {SIGNATURE}",
            },
        ]
        return orjson.dumps({"candidates": candidates}).decode()
    if body.get("model") == "m":
        question = str(body["messages"][-1]["content"])
        return f"{question} -- Acme Support" if SIGNATURE in system else question
    return None


@pytest.fixture(scope="module")
def policy(upstream: FakeOpenAI) -> str:
    upstream.responder = respond
    return POLICY.format(url=upstream.base_url)


def fleetdeck(data_dir: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "console", *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=timeout,
        check=False,
    )


def golden_file(tmp_path: Path, name: str = "signed") -> Path:
    tests = "".join(f"  - input: {question}\n" for question in QUESTIONS)
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        f"name: {name}\nroute: route:support\n"
        "defaultTest:\n  options: {max_tokens: 40}\n  assert: [{type: icontains, value: acme support}]\n"
        f"tests:\n{tests}"
    )
    return path


def add_prompt(served: Served, name: str, text: str, tmp_path: Path) -> None:
    template = tmp_path / f"{name}.txt"
    template.write_text(text)
    added = fleetdeck(served.data_dir, "prompts", "add", name, str(template))
    assert added.returncode == 0, added.stderr


def admin(served: Served) -> AdminEndpoint:
    endpoint = AdminEndpoint.find(served.data_dir)
    assert endpoint is not None
    return endpoint


def rows(served: Served, sql: str) -> list[dict[str, Any]]:
    return admin(served).query({"sql": sql}).to_pylist()


def test_a_search_adds_a_version_that_passes_more_held_out_cases_unpinned(
    served: Served, upstream: FakeOpenAI, tmp_path: Path
) -> None:
    add_prompt(served, "support", V1, tmp_path)
    before = rows(served, "SELECT count(*) AS n FROM traces")[0]["n"]
    ran = fleetdeck(
        served.data_dir, "prompts", "optimize", "support", "--golden", str(golden_file(tmp_path)),
        "--optimizer-route", "route:optimizer", "--rounds", "3", "--candidates", "2",
        "--holdout", "0.5", "--budget", "0.05",
    )  # fmt: skip
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "Added support v2 (from r1c2, parent v1); not pinned" in ran.stdout
    assert "passes every train case" in ran.stdout
    lines = [line.strip("│ ") for line in ran.stdout.splitlines() if "│" in line]
    table = [[cell.strip() for cell in line.split("│")] for line in lines]
    by_candidate = {cells[0]: cells for cells in table[1:]}
    assert by_candidate["v1"][3:5] == ["0/3", "0/3"] and by_candidate["r1c2"][3:5] == ["3/3", "3/3"]
    assert by_candidate["r1c2"][-1] == "best" and by_candidate["r1c1"][3:5] == ["0/3", "0/3"]

    listing = admin(served).call("prompts", {"action": "list"})["prompts"]
    versions = {(row["version"], row["pinned"], row["parent"]) for row in listing if row["name"] == "support"}
    assert versions == {("v1", False, None), ("v2", False, "v1")}  # never pinned
    (entry,) = rows(served, "SELECT actor_kind, payload FROM audit_log WHERE subject = 'prompt:support@v2'")
    lineage = orjson.loads(entry["payload"])["lineage"]
    assert (
        lineage["parent"] == "v1" and lineage["candidate"] == "r1c2" and "signature" in lineage["reasoning"]
    )
    assert lineage["score"]["held_out"] == 1.0 and lineage["parent_score"]["held_out"] == 0.0
    assert not rows(
        served, "SELECT * FROM audit_log WHERE action = 'prompt.pin' AND subject LIKE 'prompt:support@%'"
    )

    # Every call of the search is a trace of fleetdeck-optimize under the search's task, within budget.
    traces = rows(
        served,
        "SELECT workflow_id, task_id, request_model, cost_usd, status, key_id FROM traces "
        "ORDER BY ts_start OFFSET " + str(before),
    )
    assert len(traces) == 6 + 1 + 2 * 6  # v1 on every case, one optimizer call, two candidates
    assert {t["workflow_id"] for t in traces} == {"fleetdeck-optimize"}
    assert {t["task_id"] for t in traces} == {lineage["task_id"]}
    assert {t["status"] for t in traces} == {"ok"} and all(t["key_id"] for t in traces)
    assert sum(t["request_model"] == "route:optimizer" for t in traces) == 1
    assert 0 < sum(t["cost_usd"] for t in traces) <= 0.05

    # The optimizer saw the train cases that failed, with their asserts, never the held-out ones.
    (asked,) = [r for r in upstream.requests if r.body and r.body.get("model") == "opt"]
    shown = str(asked.body["messages"][-1]["content"])
    assert "icontains 'acme support'" in shown and V1 in shown
    assert sum(question in shown for question in QUESTIONS) == 3


def test_a_dry_run_prices_the_worst_case_and_sends_nothing(
    served: Served, upstream: FakeOpenAI, tmp_path: Path
) -> None:
    add_prompt(served, "dry", V1, tmp_path)
    sent = upstream.request_count
    ran = fleetdeck(
        served.data_dir, "prompts", "optimize", "dry", "--golden", str(golden_file(tmp_path)),
        "--optimizer-route", "route:optimizer", "--rounds", "2", "--candidates", "3", "--dry-run",
    )  # fmt: skip
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "2 x 3 candidates x 6 cases" in ran.stdout and "Dry run: searching dry@v1" in ran.stdout
    assert upstream.request_count == sent


def test_a_search_stops_before_the_budget_is_passed(served: Served, tmp_path: Path) -> None:
    add_prompt(served, "tight", V1, tmp_path)
    golden_set = golden.load(golden_file(tmp_path))
    options = command.OptimizeOptions("tight", optimizer_route="route:optimizer", candidates=2, holdout=0.5)
    settings = Settings(data_dir=served.data_dir)
    worst = command.optimize_prompt(settings, golden_set, dataclasses.replace(options, dry_run=True))
    budget = worst.worst_case["baseline"]  # the first scoring fits; the optimizer's call does not
    result = command.optimize_prompt(settings, golden_set, dataclasses.replace(options, budget_usd=budget))
    assert result.outcome is not None and result.outcome.stop.kind == "budget"
    assert "asking the optimizer" in result.outcome.stop.why and result.added is None
    spent = rows(
        served, f"SELECT sum(cost_usd) AS usd, count(*) AS n FROM traces WHERE task_id = '{result.task_id}'"
    )
    assert spent[0]["n"] == 6 and 0 < spent[0]["usd"] <= budget


# -- with the local model ------------------------------------------------------------------------


def test_the_local_model_passes_more_held_out_cases_with_the_found_version(
    served: Served, tmp_path: Path
) -> None:
    """support_faq.yaml's facts are missing from v1 (support_faq_v2.txt, 'brief and friendly'):
    the fake optimizer proposes them, and SmolLM2 answers the cases."""
    add_prompt(served, "support_faq", (EXAMPLES / "prompts" / "support_faq_v2.txt").read_text(), tmp_path)
    ran = fleetdeck(
        served.data_dir, "prompts", "optimize", "support_faq", "--golden", str(EXAMPLES / "support_faq.yaml"),
        "--optimizer-route", "route:optimizer", "--rounds", "2", "--candidates", "1", "--budget", "1",
    )  # fmt: skip
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "Added support_faq v2 (from r1c1, parent v1)" in ran.stdout
    (entry,) = rows(served, "SELECT payload FROM audit_log WHERE subject = 'prompt:support_faq@v2'")
    lineage = orjson.loads(entry["payload"])["lineage"]
    assert lineage["score"]["held_out"] > lineage["parent_score"]["held_out"]
    traces = rows(served, f"SELECT workflow_id, provider FROM traces WHERE task_id = '{lineage['task_id']}'")
    assert {t["workflow_id"] for t in traces} == {"fleetdeck-optimize"}
    assert {t["provider"] for t in traces} == {"local", "lab"} and len(traces) == 4 + 1 + 4
    pins = admin(served).call("prompts", {"action": "get", "name": "support_faq"})
    assert pins["pinned"] is None


def test_the_search_shows_its_progress_on_a_terminal(served: Served, tmp_path: Path) -> None:
    add_prompt(served, "tty", V1, tmp_path)
    shown = on_terminal(
        "prompts", "optimize", "tty", "--golden", str(golden_file(tmp_path)),
        "--optimizer-route", "route:optimizer", "--candidates", "2", "--holdout", "0.5",
        data_dir=served.data_dir,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert "prompts optimize: v1: train 0/3, held-out 0/3" in shown.stderr
    assert "round 1: asking the optimizer to edit v1" in shown.stderr
    assert "r1c2: train 3/3, held-out 3/3" in shown.stderr and "Added tty v2" in shown.stdout


def test_the_local_model_proposes_the_edits_by_default(served: Served, tmp_path: Path) -> None:
    """No --optimizer-route: SmolLM2 is the optimizer. Whatever it proposes, the loop holds."""
    add_prompt(served, "by_default", V1, tmp_path)
    ran = fleetdeck(
        served.data_dir, "prompts", "optimize", "by_default", "--golden", str(golden_file(tmp_path)),
        "--rounds", "1", "--candidates", "1", "--holdout", "0.5", "--budget", "0.5",
    )  # fmt: skip
    assert ran.returncode in (0, 1), ran.stdout + ran.stderr
    task = ran.stdout.split("Task ", 1)[1].split(".", 1)[0]
    traces = rows(served, f"SELECT workflow_id, provider, cost_usd FROM traces WHERE task_id = '{task}'")
    assert {t["workflow_id"] for t in traces} == {"fleetdeck-optimize"}
    assert sum(t["provider"] == "local" for t in traces) == 1  # the optimizer's one call
    assert sum(t["cost_usd"] or 0 for t in traces) <= 0.5
    assert admin(served).call("prompts", {"action": "get", "name": "by_default"})["pinned"] is None


def test_without_an_instance_the_search_runs_on_an_embedded_gateway(
    tmp_path: Path, upstream: FakeOpenAI, policy: str
) -> None:
    data_dir = tmp_path / "data"
    routes = tmp_path / "routes.yaml"
    routes.write_text(
        policy.replace(
            "default_route:", "  - {intent: unpriced, primary: lab/mystery-model-x}\ndefault_route:"
        )
    )
    template = tmp_path / "embedded.txt"
    template.write_text(V1)
    assert fleetdeck(data_dir, "prompts", "add", "embedded", str(template)).returncode == 0
    args = (
        "prompts",
        "optimize",
        "embedded",
        "--golden",
        str(golden_file(tmp_path)),
        "--policy",
        str(routes),
    )
    ran = fleetdeck(
        data_dir, *args, "--optimizer-route", "route:optimizer", "--candidates", "2", "--holdout", "0.5"
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "Added embedded v2 (from r1c2, parent v1)" in ran.stdout
    traces = stored_traces(data_dir, "workflow_id, task_id, key_id")
    assert len(traces) == 6 + 1 + 2 * 6 and {t["workflow_id"] for t in traces} == {"fleetdeck-optimize"}
    assert len({t["task_id"] for t in traces}) == 1
    listed = orjson.loads(fleetdeck(data_dir, "prompts", "list", "--format", "json").stdout)
    assert [(row["version"], row["parent"]) for row in listed] == [("v1", None), ("v2", "v1")]  # read back

    unpriced = fleetdeck(data_dir, *args, "--route", "route:unpriced", "--optimizer-route", "route:optimizer")
    assert unpriced.returncode == 2, unpriced.stdout + unpriced.stderr
    assert "route:unpriced has no known price, so the search cannot be held to --budget" in unpriced.stderr
