"""The judge: sampled live traffic judged off the request path, verdicts in `evals`.

The gateway tests run a real `fleetdeck serve` in front of fake OpenAI upstreams: one
serves the judged traffic, a second (or the bundled local model) is the judge.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fakes.openai_upstream import FakeOpenAI, Fault
from gateway_process import Served, create_key, fleetdeck_serve

from console.engine import Engine
from console.gateway.admin import AdminEndpoint
from console.policy import PolicyError, parse_policy
from console.quality.judge import (
    JUDGE_WORKFLOW,
    SCORES,
    UNPARSEABLE,
    VERDICTS,
    Sampled,
    Sampler,
    component_of,
    judge_body,
    parse_verdict,
)
from console.settings import Settings
from console.store import queries
from console.store.trace import Trace

# -- sampling -------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_the_sampled_share_is_the_rate_within_one_call(seed: int) -> None:
    sampler = Sampler(0.05, {"support": 0.07, "never": 0.0, "always": 1.0}, random.Random(seed))
    taken = {name: 0 for name in ("default", "support", "never", "always")}
    for n in range(1, 2001):
        for name in taken:
            taken[name] += sampler.take(None if name == "default" else name)
        if n % 250 == 0:  # at every point of the run, not only at its end
            assert abs(taken["default"] - 0.05 * n) <= 1
            assert abs(taken["support"] - 0.07 * n) <= 1
    assert taken["never"] == 0
    assert taken["always"] == 2000


def test_each_call_has_the_same_chance_and_no_fixed_period() -> None:
    positions = [0] * 20
    for seed in range(2000):
        sampler = Sampler(0.05, {}, random.Random(seed))
        first = next(i for i in range(40) if sampler.take("w"))
        positions[first] += 1
    # Each of the first 20 calls is the first one sampled about equally often (100 each).
    assert all(60 < count < 145 for count in positions), positions


# -- verdicts -------------------------------------------------------------------------------------


def test_a_verdict_is_read_from_the_json_asked_for() -> None:
    verdict = parse_verdict('{"verdict": "partial", "rationale": "One field is wrong."}')
    assert (verdict.verdict, verdict.rationale, verdict.score) == ("partial", "One field is wrong.", 0.5)


def test_a_cut_or_wrapped_answer_still_yields_its_verdict() -> None:
    cut = parse_verdict('{"verdict": "Incorrect", "rationale": "The total does not ma')
    assert (cut.verdict, cut.rationale, cut.score) == ("incorrect", "The total does not ma", 0.0)
    wrapped = parse_verdict('Here it is: ```json\n{"rationale": "fine", "verdict": "correct"}\n```')
    assert wrapped.verdict == "correct"


@pytest.mark.parametrize("answer", ["", "The answer looks correct to me.", '{"verdict": "maybe"}', None])
def test_an_answer_without_a_verdict_is_recorded_as_unparseable(answer: str | None) -> None:
    verdict = parse_verdict(answer)
    assert verdict.verdict == UNPARSEABLE
    assert verdict.score is None
    assert "holds no verdict" in verdict.rationale


def test_the_component_follows_what_the_call_did() -> None:
    assert component_of(Trace(tool_calls=[{"id": "c1", "name": "crm.lookup"}])) == "tool_selection"
    assert component_of(Trace(retrieval_doc_ids=["kb-12"])) == "retrieval"
    assert (
        component_of(Trace(guard_results={"pii": {}, "tools": {"x": "not allowed"}})) == "policy_compliance"
    )
    assert component_of(Trace(guard_results={"pii": {}})) == "answer"


def test_the_judge_sees_the_redacted_text_clipped_and_asks_for_json() -> None:
    request = {"messages": [{"role": "user", "content": "Refund <EMAIL_1> " + "x" * 5000}]}
    response = {"choices": [{"message": {"content": "Done."}}]}
    body = judge_body(Sampled(Trace(), request, response), "answer", "local/smollm2-135m", 64)
    shown = body["messages"][1]["content"]
    assert "<EMAIL_1>" in shown and "Done." in shown
    assert len(shown) < 4000
    assert body["response_format"]["json_schema"]["schema"]["properties"]["verdict"]["enum"] == list(VERDICTS)


# -- policy ---------------------------------------------------------------------------------------

POLICY_HEAD = """
providers:
  lab: {kind: openai_compat, base_url: "http://127.0.0.1:9/v1"}
routes:
  - {intent: chat, primary: lab/m}
"""


def test_the_eval_section_has_defaults() -> None:
    config = parse_policy(POLICY_HEAD).eval
    assert config.sample_rate == 0.05
    assert config.environments == ["prod"]
    assert config.judge is None


def test_a_judge_that_names_nothing_known_is_refused_with_its_line() -> None:
    text = POLICY_HEAD + "eval:\n  sample_rate: 0.1\n  judge: route:chta\n"
    with pytest.raises(
        PolicyError, match=r"<policy>:8: eval.judge: No route has intent 'chta' \(did you mean"
    ):
        parse_policy(text)
    with pytest.raises(PolicyError, match=r"eval\.sample_rate"):
        parse_policy(POLICY_HEAD + "eval: {sample_rate: 1.5}\n")
    with pytest.raises(PolicyError, match="Unknown provider 'nope'"):
        parse_policy(POLICY_HEAD + "eval: {judge: nope/m}\n")


# -- through the gateway --------------------------------------------------------------------------

GATEWAY_POLICY = """
providers:
  app: {{kind: openai_compat, base_url: "{app}", prices: {{m: {{input: 1, output: 2}}}}}}
  grader: {{kind: openai_compat, base_url: "{grader}", prices: {{g: {{input: 3, output: 4}}}}}}
  local: {{kind: local}}
routes:
  - {{intent: chat, primary: app/m}}
  - {{intent: judge, primary: grader/g, max_retries: 0, timeouts: {{total_s: 20}}}}
default_route: chat
eval:
{eval}
"""


@pytest.fixture(scope="module")
def app() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture(scope="module")
def grader() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture(autouse=True)
def _clean(app: FakeOpenAI, grader: FakeOpenAI) -> None:
    app.reset()
    grader.reset()


def serve(tmp_path: Path, app: FakeOpenAI, grader: FakeOpenAI, evaluation: str) -> Iterator[Served]:
    policy = GATEWAY_POLICY.format(app=app.base_url, grader=grader.base_url, eval=evaluation)
    return fleetdeck_serve(tmp_path / "data", policy)


def chat(
    served: Served, key: str, workflow: str, task: str, text: str = "Where is my order?", **extra: Any
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}", "X-Fleetdeck-Workflow": workflow, "X-Fleetdeck-Task": task}
    body = {"model": "route:chat", "messages": [{"role": "user", "content": text}], **extra}
    return httpx.post(f"{served.base_url}/chat/completions", json=body, headers=headers, timeout=10)


def evaluator_stats(served: Served) -> dict[str, Any]:
    stats: dict[str, Any] = httpx.get(f"{served.url}/healthz", timeout=10).json()["evaluator"]
    return stats


def wait_for_the_judge(served: Served, timeout_s: float = 120) -> dict[str, Any]:
    """Until every sampled call is judged (or failed, or dropped) and its verdict is stored."""
    endpoint = AdminEndpoint.find(served.data_dir)
    assert endpoint is not None
    deadline = time.monotonic() + timeout_s
    while True:
        stats = evaluator_stats(served)
        done = stats["judged"] + stats["unparseable"]
        settled = done + stats["failed"] + stats["dropped"] == stats["sampled"]
        if settled and endpoint.query({"sql": "SELECT count(*) AS n FROM evals"}).to_pylist()[0]["n"] == done:
            return stats
        assert time.monotonic() < deadline, f"the judge did not finish: {stats}"
        time.sleep(0.1)


def stored(data_dir: Path, sql: str) -> list[dict[str, Any]]:
    with Engine(Settings(data_dir=data_dir)) as engine:
        rows: list[dict[str, Any]] = engine.db.cursor().sql(sql).to_arrow_table().to_pylist()
    return rows


def test_sampled_calls_are_judged_at_the_configured_rate(
    tmp_path: Path, app: FakeOpenAI, grader: FakeOpenAI
) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    prod, dev = create_key(data_dir, "shop", "prod"), create_key(data_dir, "shop-dev", "dev")
    evaluation = "  sample_rate: 0.05\n  judge: route:judge\n  workflows: {support: 0.1}"
    with serve(tmp_path, app, grader, evaluation) as served:
        for n in range(200):
            assert chat(served, prod, "support", f"s-{n}").status_code == 200
            assert chat(served, prod, "billing", f"b-{n}").status_code == 200
        for n in range(40):  # development traffic and failed calls are not judged
            assert chat(served, dev, "support", f"d-{n}").status_code == 200
        app.fail_next(40, Fault(status=400))
        for n in range(40):
            assert chat(served, prod, "support", f"f-{n}").status_code == 400
        stats = wait_for_the_judge(served)
        for n in range(0, 200, 2):
            outcome = {"task_id": f"s-{n}", "status": "resolved", "workflow_id": "support"}
            httpx.post(
                f"{served.base_url}/outcomes", json=outcome, headers={"Authorization": f"Bearer {prod}"}
            )
    assert stats["eligible"] == 400
    assert stats["dropped"] == stats["failed"] == 0
    evals = stored(
        data_dir,
        "SELECT e.*, t.workflow_id, t.environment, t.status, t.task_id "
        "FROM evals e JOIN traces t USING (request_id)",
    )
    by_workflow = {w: sum(1 for e in evals if e["workflow_id"] == w) for w in ("support", "billing")}
    assert abs(by_workflow["support"] - 20) <= 1, by_workflow  # 10 % of 200
    assert abs(by_workflow["billing"] - 10) <= 1, by_workflow  # 5 % of 200
    assert {(e["environment"], e["status"]) for e in evals} == {("prod", "ok")}
    # The fake grader echoes its prompt: no verdict in it, and none is invented.
    assert {e["verdict"] for e in evals} == {UNPARSEABLE}
    assert all(e["evaluator"] == "judge:grader/g" and e["component"] == "answer" for e in evals)

    judges = {
        t["request_id"]: t
        for t in stored(data_dir, f"SELECT * FROM traces WHERE workflow_id = '{JUDGE_WORKFLOW}'")
    }
    assert len(judges) == len(evals)
    key_ids = {t["key_id"] for t in judges.values()}
    shop_keys = {
        r["key_id"] for r in stored(data_dir, "SELECT key_id FROM virtual_keys WHERE name LIKE 'shop%'")
    }
    assert len(key_ids) == 1 and not key_ids & shop_keys  # the evaluator's own key
    for e in evals:
        judge = judges[e["judge_request_id"]]
        assert judge["intent"] == "judge" and judge["route"] == "judge"
        assert judge["parent_id"] == e["request_id"]
        assert judge["task_id"] == e["task_id"]
        assert judge["cost_usd"] > 0 and e["judge_cost_usd"] == judge["cost_usd"]
    judged_ids = {e["request_id"] for e in evals}
    assert not judged_ids & set(judges)  # the judge's calls are never judged

    with Engine(Settings(data_dir=data_dir)) as engine:
        rows = queries.run(engine.db.cursor(), "cost_per_outcome", {"workflow": "support"}).to_pylist()
    (support,) = rows
    judge_cost = sum(j["cost_usd"] for j in judges.values() if j["task_id"].startswith("s-"))
    assert support["judge_calls"] == by_workflow["support"]
    assert support["judge_cost_usd"] == pytest.approx(judge_cost)


def test_a_stalled_judge_never_holds_up_requests(tmp_path: Path, app: FakeOpenAI, grader: FakeOpenAI) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    prod = create_key(data_dir, "shop", "prod")
    grader.fail_always(Fault(delay_s=15))
    evaluation = "  sample_rate: 1.0\n  judge: route:judge\n  queue_size: 2"
    with serve(tmp_path, app, grader, evaluation) as served:
        answered = [chat(served, prod, "support", f"t-{n}").status_code for n in range(20)]
        stats = evaluator_stats(served)
    assert answered == [200] * 20
    assert stats["sampled"] == 20
    assert stats["queued"] == 2
    assert stats["dropped"] == 17  # one in the judge's hands, two waiting
    assert stats["judged"] == stats["unparseable"] == 0


def test_the_verdict_the_judge_gives_is_the_one_stored(
    tmp_path: Path, app: FakeOpenAI, grader: FakeOpenAI
) -> None:
    """The fake grader echoes what it is shown, the judged call's request and answer: a call
    whose text is a verdict in the JSON the judge asks for gets exactly that verdict."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    prod = create_key(data_dir, "shop", "prod")
    given = {
        "t-correct": ("correct", "The total matches the invoice."),
        "t-partial": ("partial", "One field is wrong."),
        "t-incorrect": ("incorrect", "The order number is made up."),
    }
    evaluation = "  sample_rate: 0\n  judge: route:judge\n  workflows: {graded: 1.0}"
    with serve(tmp_path, app, grader, evaluation) as served:
        for task, (verdict, rationale) in given.items():
            text = f'{{"verdict": "{verdict}", "rationale": "{rationale}"}}'
            assert chat(served, prod, "graded", task, text).status_code == 200
        stats = wait_for_the_judge(served)
    assert (stats["judged"], stats["unparseable"], stats["failed"]) == (3, 0, 0)
    evals = stored(data_dir, "SELECT e.*, t.task_id FROM evals e JOIN traces t USING (request_id)")
    assert {e["task_id"]: (e["verdict"], e["rationale"], e["score"]) for e in evals} == {
        "t-correct": ("correct", "The total matches the invoice.", 1.0),
        "t-partial": ("partial", "One field is wrong.", 0.5),
        "t-incorrect": ("incorrect", "The order number is made up.", 0.0),
    }
    assert {e["evaluator"] for e in evals} == {"judge:grader/g"}
    assert len(grader.requests) == 3


def test_the_local_model_judges_by_default(tmp_path: Path, app: FakeOpenAI, grader: FakeOpenAI) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    prod = create_key(data_dir, "shop", "prod")
    with serve(tmp_path, app, grader, "  sample_rate: 0\n  workflows: {graded: 1.0}") as served:
        assert chat(served, prod, "graded", "t-1", "What is the capital of France? Paris.").status_code == 200
        tools = [{"type": "function", "function": {"name": "crm.lookup", "parameters": {"type": "object"}}}]
        assert chat(served, prod, "graded", "t-2", tools=tools, tool_choice="required").status_code == 200
        assert chat(served, prod, "ungraded", "t-3").status_code == 200
        stats = wait_for_the_judge(served, timeout_s=300)
    assert (stats["judged"], stats["unparseable"], stats["failed"]) == (2, 0, 0)
    evals = stored(data_dir, "SELECT * FROM evals ORDER BY ts")
    assert [e["component"] for e in evals] == ["answer", "tool_selection"]
    # Which verdict SmolLM2-135M reaches is its own affair (the test above pins the verdict a
    # judge gives to the one stored); the grammar bounds it to the schema's, scored as such.
    for e in evals:
        assert e["score"] == SCORES[e["verdict"]]
        assert e["evaluator"] == "judge:local/smollm2-135m"
        assert isinstance(e["rationale"], str)
    judges = stored(data_dir, f"SELECT * FROM traces WHERE workflow_id = '{JUDGE_WORKFLOW}'")
    assert all(j["schema_valid"] is True and j["provider"] == "local" for j in judges)
    assert {j["cost_usd"] for j in judges} == {e["judge_cost_usd"] for e in evals}
