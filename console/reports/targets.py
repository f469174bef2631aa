"""Every figure of the scorecard, its target and how its status is graded: the one place they live.

Targets from seed 004's readiness table: trace completeness above 99 %, spend within ±10 %
of budget, 0 critical policy violations. The others are Fleetdeck's defaults, chosen for
an operator of production LLM features (seed 004's 60–85 % of calls on small models, seed
000's drift alarm at a 10-point change). Each is graded green / amber / red; a figure with
no data (nothing resolved, no budget set, nothing judged) is "n/a".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Status = Literal["green", "amber", "red", "n/a"]
Unit = Literal["usd", "ratio", "ms", "count"]

SLO_MS_DEFAULT = 2000.0
COST_GROWTH_GREEN = 0.10
COST_GROWTH_AMBER = 0.25
BUDGET_TOLERANCE = 0.10
SMALL_SHARE_GREEN = 0.60
SMALL_SHARE_AMBER = 0.40
CACHE_DROP_GREEN = 0.05
CACHE_DROP_AMBER = 0.15
ERROR_RATE_GREEN = 0.01
ERROR_RATE_AMBER = 0.05
LATENCY_AMBER_FACTOR = 1.25
INCORRECT_GREEN = 0.10
INCORRECT_AMBER = 0.20
DRIFT_POINTS = 0.10
COMPLETENESS_GREEN = 0.99
COMPLETENESS_AMBER = 0.95


@dataclass(frozen=True)
class Target:
    figure: str
    title: str
    unit: Unit
    target: str
    grading: str


TARGETS: tuple[Target, ...] = (
    Target(
        "cost_per_outcome_usd",
        "Cost per outcome",
        "usd",
        "≤ previous period + 10 %",
        "green: at most 10 % above the previous period; amber: up to 25 % above; red: more, "
        "or money spent and nothing resolved",
    ),
    Target(
        "spend_usd",
        "Total spend",
        "usd",
        "≤ previous period + 10 %",
        "green: at most 10 % above the previous period; amber: up to 25 % above; red: more",
    ),
    Target(
        "budget_used",
        "Spend against budget",
        "ratio",
        "within ±10 % of budget (seed 004)",
        "budget = the policy's daily caps x days in the period (workflow cap, else the caps of "
        "the routes only it uses); green: 90–110 % used; amber: under 90 % (budget oversized); "
        "red: over 110 %; n/a: no budget set",
    ),
    Target(
        "small_or_local_share",
        "Calls on small or local models",
        "ratio",
        "≥ 60 % (seed 004: 60–85 %)",
        "green: at least 60 %; amber: at least 40 %; red: less",
    ),
    Target(
        "cache_hit_rate",
        "Cache hit rate",
        "ratio",
        "no drop over 5 points",
        "green: at most 5 points below the previous period; amber: up to 15 points below; red: more",
    ),
    Target(
        "cache_saved_usd",
        "Money saved by the cache",
        "usd",
        "follows the cache hit rate",
        "the status of the cache hit rate; saved = hits x the route's mean cost of an ok cache miss",
    ),
    Target(
        "error_rate",
        "Error rate",
        "ratio",
        "≤ 1 %",
        "errors (error, partial) / calls sent to a model; green: at most 1 %; amber: at most 5 %; red: more",
    ),
    Target(
        "latency_p95_ms",
        "p95 latency (slowest route vs its SLO)",
        "ms",
        "≤ the route's SLO (default 2000 ms)",
        "the route with the highest p95 / SLO; green: within the SLO; amber: up to 25 % over; red: more",
    ),
    Target(
        "incidents",
        "Incidents",
        "count",
        "0",
        "breaker ejections, budget breaches, drift and other alerts, route stops; green: none; "
        "amber: warnings only; red: any critical",
    ),
    Target(
        "critical_policy_violations",
        "Critical policy violations",
        "count",
        "0 (seed 004)",
        "judge verdicts 'incorrect' on policy compliance; green: none; red: any",
    ),
    Target(
        "judge_incorrect_share",
        "Judged incorrect (quality)",
        "ratio",
        "≤ 10 %, no rise over 10 points",
        "share of judged calls with verdict incorrect; green: at most 10 %; amber: at most 20 %, "
        "or up more than 10 points on the previous period; red: more than 20 %",
    ),
    Target(
        "trace_completeness",
        "Trace completeness",
        "ratio",
        "> 99 % (seed 004)",
        "full traces / requests seen; green: above 99 %; amber: above 95 %; red: less",
    ),
)
BY_FIGURE = {target.figure: target for target in TARGETS}


def growth_status(value: float | None, previous: float | None) -> Status:
    if value is None:
        return "n/a"
    if previous is None or previous <= 0:
        return "green"
    growth = value / previous - 1
    return "green" if growth <= COST_GROWTH_GREEN else "amber" if growth <= COST_GROWTH_AMBER else "red"


def budget_status(used: float | None) -> Status:
    if used is None:
        return "n/a"
    if used > 1 + BUDGET_TOLERANCE:
        return "red"
    return "green" if used >= 1 - BUDGET_TOLERANCE else "amber"


def at_least(value: float | None, green: float, amber: float) -> Status:
    if value is None:
        return "n/a"
    return "green" if value >= green else "amber" if value >= amber else "red"


def at_most(value: float | None, green: float, amber: float) -> Status:
    if value is None:
        return "n/a"
    return "green" if value <= green else "amber" if value <= amber else "red"


def cache_status(value: float | None, previous: float | None) -> Status:
    if value is None:
        return "n/a"
    drop = (previous or 0.0) - value
    return "green" if drop <= CACHE_DROP_GREEN else "amber" if drop <= CACHE_DROP_AMBER else "red"


def latency_status(p95_ms: float | None, slo_ms: float) -> Status:
    return at_most(p95_ms, slo_ms, slo_ms * LATENCY_AMBER_FACTOR)


def incident_status(critical: int, warnings: int) -> Status:
    return "red" if critical else "amber" if warnings else "green"


def quality_status(incorrect: float | None, previous: float | None) -> Status:
    status = at_most(incorrect, INCORRECT_GREEN, INCORRECT_AMBER)
    rose = incorrect is not None and previous is not None and incorrect - previous > DRIFT_POINTS
    return "amber" if status == "green" and rose else status


def completeness_status(value: float | None) -> Status:
    if value is None:
        return "n/a"
    return "green" if value > COMPLETENESS_GREEN else "amber" if value > COMPLETENESS_AMBER else "red"
