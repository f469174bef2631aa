"""`fleetdeck routing calibrate` on the shipped sample traces, and the gateway using its threshold."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import orjson
import pytest
from fakes.openai_upstream import FakeOpenAI
from gateway_process import REPO, fleetdeck_serve, run_cli, trace_of

from console.engine import Engine
from console.routing.difficulty import DifficultyModel, load_models, request_features
from console.settings import Settings
from console.store import queries

ROUTE = "draft_support_reply"


@pytest.fixture(scope="module")
def sample_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("calibrate") / "data"
    imported = run_cli(data_dir, "import", str(REPO / "sample_traces"))
    assert imported.returncode == 0, imported.stderr
    return data_dir


@pytest.fixture
def store(sample_store: Path, tmp_path: Path) -> Path:
    """A copy of the imported sample store, so each test starts without thresholds."""
    shutil.copytree(sample_store, tmp_path / "data")
    return tmp_path / "data"


def calibrate(data_dir: Path, *args: str) -> dict[str, object]:
    done = run_cli(data_dir, "routing", "calibrate", *args, "--format", "json")
    assert done.returncode == 0, done.stderr
    report: dict[str, object] = json.loads(done.stdout)
    return report


def strategies(report: dict[str, object]) -> dict[str, dict[str, float]]:
    return {row["strategy"]: row for row in report["strategies"]}  # type: ignore[attr-defined]


@pytest.mark.parametrize(("route", "target"), [(ROUTE, 0.2), (ROUTE, 0.5), ("refund_agent", 0.1)])
def test_the_threshold_meets_the_target_share(store: Path, route: str, target: float) -> None:
    report = calibrate(store, "--route", route, "--target-large-share", str(target), "--dry-run")
    rows = strategies(report)
    router = rows["router"]
    assert abs(router["large_share"] - target) <= 0.02
    small, large = rows["always small"], rows["always large"]
    assert (small["large_share"], large["large_share"]) == (0.0, 1.0)
    assert small["cost_usd"] < router["cost_usd"] < large["cost_usd"]
    assert min(small["quality"], large["quality"]) <= router["quality"] <= 1.0
    random_share = rows["random, same share"]
    assert random_share["large_share"] == pytest.approx(router["large_share"])
    assert report["judged"][report["tiers"]["small"]] >= 20  # type: ignore[index]
    sweep = [row["large_share"] for row in report["sweep"]]  # type: ignore[attr-defined]
    assert sweep == sorted(sweep) and sweep[0] == 0.0 and sweep[-1] >= 0.99
    with Engine(Settings(data_dir=store)) as engine:
        assert load_models(engine.db.cursor()) == {}, "--dry-run keeps no threshold"


def test_the_table_is_printed_and_the_threshold_kept(store: Path) -> None:
    done = run_cli(store, "routing", "calibrate", "--route", ROUTE, "--target-large-share", "0.2")
    assert done.returncode == 0, done.stderr
    for expected in ("always small", "always large", "random, same share", "router", "PGR", "sweep:"):
        assert expected in done.stdout
    assert "Threshold kept for route draft_support_reply" in done.stdout
    with Engine(Settings(data_dir=store)) as engine:
        cursor = engine.db.cursor()
        kept = queries.run(cursor, "routing_thresholds", {}).to_pylist()
        (audited,) = cursor.sql(
            "SELECT count(*) FROM audit_log WHERE action = 'routing.calibrated' AND subject = ?",
            params=[ROUTE],
        ).fetchall()[0]
        models = load_models(cursor)
    assert [row["route"] for row in kept] == [ROUTE]
    assert abs(kept[0]["predicted_large_share"] - 0.2) <= 0.02
    assert audited == 1
    assert models[ROUTE].threshold == kept[0]["threshold"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--route", "nope", "--target-large-share", "0.2"], "no served calls"),
        (["--route", ROUTE, "--target-large-share", "1.5"], "between 0 and 1"),
        (["--route", "triage_ticket", "--target-large-share", "0.2"], "judged calls on two tiers"),
        (["--route", ROUTE, "--target-large-share", "0.2", "--from", "yesterday"], "--from"),
    ],
)
def test_what_cannot_be_calibrated_is_said(store: Path, args: list[str], message: str) -> None:
    done = run_cli(store, "routing", "calibrate", *args)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr


POLICY = """
providers:
  small: {{kind: openai_compat, base_url: {small}, prices: {{mini: {{input: 1.0, output: 2.0}}}}}}
  big: {{kind: openai_compat, base_url: {big}, prices: {{gpt: {{input: 10.0, output: 20.0}}}}}}
routes:
  - intent: draft_support_reply
    primary: small/mini
    max_retries: 0
    escalation: {{large: big/gpt}}
"""


def test_the_gateway_routes_on_the_calibrated_threshold(
    store: Path, upstreams: tuple[FakeOpenAI, FakeOpenAI]
) -> None:
    calibrate(store, "--route", ROUTE, "--target-large-share", "0.2")
    with Engine(Settings(data_dir=store)) as engine:
        model = load_models(engine.db.cursor())[ROUTE]
    requests = [(words, step) for words in (1, 20_000) for step in (1, 8)]
    scored = sorted(requests, key=lambda r: score(model, *r))
    easy, hard = scored[0], scored[-1]
    assert score(model, *easy) <= model.threshold < score(model, *hard), "the sample data can route both ways"
    small, big = upstreams
    with fleetdeck_serve(store, POLICY.format(small=small.base_url, big=big.base_url)) as served:
        answers = [send(served.base_url, served.auth, *request) for request in (easy, hard)]
        traces = [trace_of(served, a.headers["x-fleetdeck-request-id"]) for a in answers]
    assert [a.headers["x-fleetdeck-reason"] for a in answers] == [
        "cost-tier-downgrade",
        "escalation-difficulty",
    ]
    assert [a.headers["x-fleetdeck-model"] for a in answers] == ["small/mini", "big/gpt"]
    for trace, request in zip(traces, (easy, hard), strict=True):
        noted = orjson.loads(str(trace["guard_results"]))["routing"]["difficulty"]
        assert noted["threshold"] == pytest.approx(model.threshold, abs=1e-4)
        assert noted["score"] == pytest.approx(score(model, *request), abs=1e-4)


def body_of(words: int) -> dict[str, object]:
    return {
        "model": f"route:{ROUTE}",
        "messages": [{"role": "user", "content": "word " * words}],
        "max_tokens": 5,
    }


def score(model: DifficultyModel, words: int, step: int) -> float:
    return model.score(request_features(body_of(words), step))


def send(base_url: str, auth: dict[str, str], words: int, step: int) -> httpx.Response:
    headers = {**auth, "X-Fleetdeck-Step": str(step)}
    response = httpx.post(f"{base_url}/chat/completions", json=body_of(words), headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    return response
