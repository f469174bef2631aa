"""The Overview's tiles from the read model: where each turns amber and red, and what it opens."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from console.engine import Engine
from console.policy import parse_policy
from console.tui.panes.overview import TILE_NAMES
from console.tui.readmodel import overview
from console.tui.readmodel.fleet import BudgetBurn
from console.tui.readmodel.overview import THRESHOLDS, Oversight

from .conftest import FROZEN_NOW

POLICY = """
providers:
  lab: {kind: openai_compat, base_url: "http://127.0.0.1:9/v1", prices: {m: {input: 1.0, output: 2.0}}}
routes:
  - intent: general
    primary: lab/m
    latency_slo_ms: 1000
default_route: general
rate_limits:
  per_key: {requests_per_minute: 10}
"""


def key_row(**values: Any) -> dict[str, Any]:
    row = {"key_id": "k1", "name": "ci", "requests": 0, "tokens": 0}
    row.update(
        {"requests_per_minute": None, "tokens_per_minute": None, "daily_cap": None, "monthly_cap": None}
    )
    return {**row, **values}


@pytest.mark.parametrize(("spent", "level"), [(7.9, "green"), (8.0, "amber"), (9.5, "amber"), (10.0, "red")])
def test_spend_turns_amber_at_80_percent_of_a_cap_and_red_at_it(spent: float, level: str) -> None:
    caps = [
        BudgetBurn("route", "general", spent, 10.0, "day"),
        BudgetBurn("route", "other", 1.0, 10.0, "day"),
    ]
    rows = [{"scope": "route:general", "period": "day", "spend_usd": spent}]
    day, month = overview.spend_tiles(rows, caps)
    assert (day.level, day.value, month.level) == (level, f"${spent:.2f}", "green")
    assert day.detail.startswith("route general:") and day.title.endswith("2 caps")


def test_the_policys_per_key_limit_counts_for_a_key_without_its_own() -> None:
    policy = parse_policy(POLICY)
    busy = overview.keys_tile([key_row(requests=10)], [], policy)
    assert (busy.level, busy.opens.pane, busy.opens.filter) == ("red", "traffic", "key:k1 since:1d")
    near = overview.keys_tile([key_row(requests=5, requests_per_minute=6)], [], policy)
    assert near.level == "amber" and "req/min 83%" in near.detail
    capped = overview.keys_tile(
        [key_row(daily_cap=2.0)], [{"scope": "key:k1", "period": "day", "spend_usd": 1.0}], None
    )
    assert capped.level == "green" and "daily cap 50%" in capped.detail


def test_p95_is_held_against_each_routes_own_slo() -> None:
    policy = parse_policy(POLICY)
    rows = [{"route": "general", "latency_p95_ms": 1200.0}, {"route": "unbound", "latency_p95_ms": 9000.0}]
    tile = overview.latency_tile(rows, policy)
    assert (tile.level, tile.value, tile.opens.filter) == ("red", "1.20 s", "route:general since:1h")
    assert overview.latency_tile([{"route": "general", "latency_p95_ms": 700.0}], policy).level == "green"


def test_judge_coverage_counts_the_judged_environments_only() -> None:
    rows = [
        {"environment": "prod", "answered": 30, "judged": 0},
        {"environment": "dev", "answered": 500, "judged": 0},
    ]
    assert overview.coverage_tile(rows, None).level == "red"
    rows[0]["judged"] = 1  # 3.3 % of calls against a 5 % sample rate: above half of it
    assert overview.coverage_tile(rows, None).level == "green"
    assert overview.coverage_tile(rows[1:], None).detail == "no prod calls"


def test_held_calls_turn_red_once_one_has_waited_five_minutes() -> None:
    waited = FROZEN_NOW - timedelta(seconds=THRESHOLDS.held_red_s)
    assert overview.approvals_tile(Oversight([FROZEN_NOW], gateway=True), FROZEN_NOW).level == "amber"
    assert overview.approvals_tile(Oversight([waited], gateway=True), FROZEN_NOW).level == "red"


def test_every_tile_of_the_sample_store_has_its_place_in_the_pane(console_engine: Engine) -> None:
    tiles = overview.snapshot(console_engine.db.cursor(), FROZEN_NOW, None, None, Oversight())
    assert tuple(tile.name for tile in tiles) == TILE_NAMES
    requests = next(tile for tile in tiles if tile.name == "requests")
    assert requests.value == "5"  # the sample's last hour: 22:50 to 23:50
    assert all(tile.opens.pane in {"traffic", "cost", "drift", "audit", "fleet"} for tile in tiles)
