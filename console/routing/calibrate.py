"""Learn a route's difficulty threshold from judged traffic, RouteLLM-style.

RouteLLM (lm-sys, ICLR 2025) routes a query to the strong model when a predicted win rate
is above a threshold calibrated so that a target share of calls goes strong. Traces have no
pairs (each call was answered by one tier), so here:

1. Data: the route's served calls in the window (queries/routing_judged_calls.sql) with
   their tier and, where judged, the verdict. Quality is the share of answers the judge
   calls `correct`.
2. Difficulty d(x): a logistic regression, fitted on the small tier's judged calls, of the
   chance that the small tier's answer is not correct, on the features of
   console.routing.difficulty. A second one, on the large tier's judged calls, predicts the
   large tier's chance of being correct, q_large(x). q_small(x) = 1 - d(x).
3. Cost: per tier, USD per input and output token, fitted by least squares on that tier's
   calls; every call is priced under both tiers with its own token counts.
4. Sweep: over every served call, a threshold t sends the calls with d(x) > t to the large
   tier. Its large share, predicted quality (mean of q_large or q_small per call) and cost
   are computed for t at every decile of share; the threshold kept is the one whose share
   is nearest the target. Always-small, always-large and random routing at the same share
   are the baselines, as in RouteLLM; PGR is the performance gap recovered,
   (quality - always-small) / (always-large - always-small).

`AUC` says how well d(x) separates the small tier's judged failures from its successes
in-sample (0.5: no better than chance); on data where the features carry no signal the
router does no better than random routing, and the table shows it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import duckdb
import numpy as np
import numpy.typing as npt

from console.clock import utc_now
from console.routing.difficulty import FEATURES, DifficultyModel, trace_features
from console.store import queries
from console.store.audit import AuditEvent

Array = npt.NDArray[np.float64]
MIN_JUDGED = 20  # judged calls per tier below which no fit is attempted
L2 = 1.0  # ridge penalty of the logistic fits, in standardised units
SWEEP_SHARES = tuple(round(0.1 * n, 1) for n in range(11))


class CalibrationError(Exception):
    """Not enough (or unusable) judged traffic; the message says what is missing."""


@dataclass(frozen=True, slots=True)
class Strategy:
    name: str
    large_share: float
    quality: float
    cost_usd: float

    def pgr(self, small: Strategy, large: Strategy) -> float | None:
        gap = large.quality - small.quality
        return (self.quality - small.quality) / gap if abs(gap) > 1e-9 else None


@dataclass(frozen=True)
class Calibration:
    route: str
    small_tier: str
    large_tier: str
    target_large_share: float
    model: DifficultyModel
    calls: int
    judged: dict[str, int]
    auc: float | None
    chosen: Strategy
    always_small: Strategy
    always_large: Strategy
    random_at_share: Strategy
    observed: Strategy  # the judged set as it was routed
    sweep: list[tuple[float, Strategy]] = field(default_factory=list)  # (threshold, strategy)

    @property
    def keeps_quality(self) -> bool:
        return self.chosen.quality >= self.observed.quality


@dataclass(frozen=True)
class _Calls:
    tiers: list[str]
    features: Array
    input_tokens: Array
    output_tokens: Array
    cost: Array
    verdicts: list[str | None]

    @classmethod
    def read(
        cls, cursor: duckdb.DuckDBPyConnection, route: str, start: datetime | None, end: datetime | None
    ) -> _Calls:
        rows = queries.run(
            cursor, "routing_judged_calls", {"route": route, "from": start, "to": end}
        ).to_pylist()
        return cls(
            tiers=[str(r["tier"]) for r in rows],
            features=np.array(
                [trace_features(r["input_tokens"], r["step"], r["tools"], r["wants_json"]) for r in rows],
                dtype=np.float64,
            ).reshape(len(rows), len(FEATURES)),
            input_tokens=np.array([r["input_tokens"] for r in rows], dtype=np.float64),
            output_tokens=np.array([r["output_tokens"] for r in rows], dtype=np.float64),
            cost=np.array([r["cost_usd"] for r in rows], dtype=np.float64),
            verdicts=[r["verdict"] for r in rows],
        )

    def mask(self, tier: str, judged: bool = False) -> npt.NDArray[np.bool_]:
        return np.array(
            [
                t == tier and (not judged or v is not None)
                for t, v in zip(self.tiers, self.verdicts, strict=True)
            ]
        )

    def correct(self) -> Array:
        return np.array([v == "correct" for v in self.verdicts], dtype=np.float64)


def calibrate(
    cursor: duckdb.DuckDBPyConnection,
    route: str,
    target_large_share: float,
    *,
    small_tier: str | None = None,
    large_tier: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> Calibration:
    if not 0.0 <= target_large_share <= 1.0:
        raise CalibrationError(f"--target-large-share must be between 0 and 1, got {target_large_share}")
    calls = _Calls.read(cursor, route, start, end)
    if not calls.tiers:
        raise CalibrationError(f"route {route!r} has no served calls in the window to calibrate on")
    small, large = _tiers(calls, small_tier, large_tier)
    judged = {tier: int(calls.mask(tier, judged=True).sum()) for tier in (small, large)}
    for tier, count in judged.items():
        if count < MIN_JUDGED:
            raise CalibrationError(
                f"route {route!r}: {count} judged calls on tier {tier!r}; at least {MIN_JUDGED} are needed "
                "(judge more of its traffic, or widen --from/--to)"
            )
    mean = calls.features.mean(axis=0)
    scale = calls.features.std(axis=0)
    scale[scale < 1e-9] = 1.0
    standard = (calls.features - mean) / scale
    failed = 1.0 - calls.correct()
    small_judged, large_judged = calls.mask(small, judged=True), calls.mask(large, judged=True)
    weights, bias = _logistic(standard[small_judged], failed[small_judged])
    large_weights, large_bias = _logistic(standard[large_judged], failed[large_judged])
    difficulty = _sigmoid(standard @ weights + bias)
    q_large = 1.0 - _sigmoid(standard @ large_weights + large_bias)
    cost_small, cost_large = (_cost_model(calls, calls.mask(tier)) for tier in (small, large))

    def routed(threshold: float, name: str) -> Strategy:
        to_large = difficulty > threshold
        quality = np.where(to_large, q_large, 1.0 - difficulty).mean()
        cost = np.where(to_large, cost_large, cost_small).sum()
        return Strategy(name, float(to_large.mean()), float(quality), float(cost))

    threshold = _threshold_for(difficulty, target_large_share)
    chosen = routed(threshold, "router")
    always_small = Strategy("always small", 0.0, float((1.0 - difficulty).mean()), float(cost_small.sum()))
    always_large = Strategy("always large", 1.0, float(q_large.mean()), float(cost_large.sum()))
    share = chosen.large_share
    random_at_share = Strategy(
        "random, same share",
        share,
        (1 - share) * always_small.quality + share * always_large.quality,
        (1 - share) * always_small.cost_usd + share * always_large.cost_usd,
    )
    judged_mask = small_judged | large_judged
    observed = Strategy(
        "judged traffic as routed",
        float(large_judged.sum() / judged_mask.sum()),
        float(calls.correct()[judged_mask].mean()),
        float(calls.cost.sum()),
    )
    model = DifficultyModel(
        route, tuple(map(float, weights)), float(bias), tuple(mean), tuple(scale), threshold
    )
    sweep = [
        (t, routed(t, f"router at {s:.0%}")) for s in SWEEP_SHARES for t in [_threshold_for(difficulty, s)]
    ]
    return Calibration(
        route=route,
        small_tier=small,
        large_tier=large,
        target_large_share=target_large_share,
        model=model,
        calls=len(calls.tiers),
        judged=judged,
        auc=_auc(difficulty[small_judged], failed[small_judged]),
        chosen=chosen,
        always_small=always_small,
        always_large=always_large,
        random_at_share=random_at_share,
        observed=observed,
        sweep=sweep,
    )


def save(cursor: duckdb.DuckDBPyConnection, calibration: Calibration, actor: str) -> None:
    c = calibration
    cursor.execute(
        "INSERT INTO routing_thresholds VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            utc_now(),
            c.route,
            c.small_tier,
            c.large_tier,
            c.target_large_share,
            c.model.threshold,
            c.chosen.large_share,
            c.chosen.quality,
            c.chosen.cost_usd,
            c.calls,
            sum(c.judged.values()),
            json.dumps(c.model.to_json()),
            json.dumps(report_json(c)),
            actor,
        ],
    )


def audit_event(c: Calibration, actor: str) -> AuditEvent:
    return AuditEvent(
        actor=actor,
        actor_kind="human",
        action="routing.calibrated",
        subject=c.route,
        payload={
            "threshold": round(c.model.threshold, 6),
            "target_large_share": c.target_large_share,
            "predicted_large_share": round(c.chosen.large_share, 4),
            "predicted_quality": round(c.chosen.quality, 4),
            "judged": c.judged,
        },
    )


def report_json(c: Calibration) -> dict[str, Any]:
    def row(s: Strategy) -> dict[str, Any]:
        return {
            "strategy": s.name,
            "large_share": round(s.large_share, 4),
            "quality": round(s.quality, 4),
            "cost_usd": round(s.cost_usd, 6),
            "pgr": _round(s.pgr(c.always_small, c.always_large)),
        }

    return {
        "route": c.route,
        "tiers": {"small": c.small_tier, "large": c.large_tier},
        "target_large_share": c.target_large_share,
        "threshold": round(c.model.threshold, 6),
        "calls": c.calls,
        "judged": c.judged,
        "auc": _round(c.auc),
        "keeps_quality": c.keeps_quality,
        "strategies": [row(s) for s in _strategies(c)],
        "sweep": [{"threshold": round(t, 6), **row(s)} for t, s in c.sweep],
        "model": c.model.to_json(),
    }


def render(c: Calibration) -> str:
    lines = [
        f"route {c.route}: {c.calls} served calls, judged {c.judged[c.small_tier]} on {c.small_tier}, "
        f"{c.judged[c.large_tier]} on {c.large_tier}",
        f"difficulty = P(the {c.small_tier} tier's answer is not correct | "
        f"{', '.join(FEATURES)}); AUC on its judged calls {_fmt(c.auc, '.3f')}",
        f"threshold {c.model.threshold:.4f}: {c.chosen.large_share:.1%} of calls to {c.large_tier} "
        f"(target {c.target_large_share:.1%})",
        "",
        _table(c, _strategies(c)),
        "",
        "sweep:",
        _table(c, [s for _, s in c.sweep], [t for t, _ in c.sweep]),
        "",
        f"quality {c.chosen.quality:.1%} vs {c.observed.quality:.1%} on the judged traffic as routed: "
        + ("kept" if c.keeps_quality else "NOT kept (raise --target-large-share)"),
    ]
    return "\n".join(lines) + "\n"


def _strategies(c: Calibration) -> list[Strategy]:
    return [c.always_small, c.always_large, c.random_at_share, c.chosen, c.observed]


def _table(c: Calibration, rows: Sequence[Strategy], thresholds: Sequence[float] | None = None) -> str:
    out = [
        f"{'strategy':<26}{'threshold':>10}{'large share':>13}{'quality':>9}"
        f"{'cost USD':>12}{'vs large':>10}{'PGR':>7}"
    ]
    large_cost = c.always_large.cost_usd
    for index, s in enumerate(rows):
        threshold = thresholds[index] if thresholds else (c.model.threshold if s is c.chosen else None)
        saving = s.cost_usd / large_cost if large_cost > 0 else None
        pgr = s.pgr(c.always_small, c.always_large)
        out.append(
            f"{s.name:<26}{_fmt(threshold, '.4f'):>10}{s.large_share:>13.1%}{s.quality:>9.1%}"
            f"{s.cost_usd:>12.4f}{_fmt(saving, '.0%'):>10}{_fmt(pgr, '.2f'):>7}"
        )
    return "\n".join(out)


def _tiers(calls: _Calls, small: str | None, large: str | None) -> tuple[str, str]:
    found = sorted(set(calls.tiers))
    for name in (small, large):
        if name is not None and name not in found:
            raise CalibrationError(
                f"tier {name!r} has no served calls on this route; tiers: {', '.join(found)}"
            )
    if small and large:
        return small, large
    judged = [t for t in found if calls.mask(t, judged=True).any()]
    if len(judged) < 2:
        raise CalibrationError(
            f"the route needs judged calls on two tiers; judged tiers: {', '.join(judged) or 'none'}"
        )
    by_cost = sorted(judged, key=lambda tier: float(calls.cost[calls.mask(tier)].mean()))
    if len(by_cost) > 2 and not (small or large):
        raise CalibrationError(
            f"judged calls on {', '.join(by_cost)}: name them with --small-tier and --large-tier"
        )
    small = small or next(t for t in by_cost if t != large)
    large = large or next(t for t in reversed(by_cost) if t != small)
    return small, large


def _threshold_for(difficulty: Array, share: float) -> float:
    """The cut whose share of scores above it is nearest `share` (ties in scores decide)."""
    ordered = np.sort(difficulty)[::-1]
    candidates = np.concatenate([[1.0], ordered])  # 1.0: nothing above it
    shares = np.array([(difficulty > t).mean() for t in candidates])
    return float(candidates[int(np.argmin(np.abs(shares - share)))])


def _logistic(x: Array, y: Array, iterations: int = 50) -> tuple[Array, float]:
    """Ridge-penalised logistic regression by Newton's method; the intercept is not penalised."""
    design = np.hstack([np.ones((len(x), 1)), x])
    beta = np.zeros(design.shape[1])
    penalty = np.eye(design.shape[1]) * L2
    penalty[0, 0] = 0.0
    for _ in range(iterations):
        p = _sigmoid(design @ beta)
        gradient = design.T @ (p - y) + penalty @ beta
        hessian = design.T @ (design * (p * (1 - p))[:, None]) + penalty
        step = np.linalg.solve(hessian, gradient)
        beta -= step
        if np.abs(step).max() < 1e-8:
            break
    return beta[1:], float(beta[0])


def _cost_model(calls: _Calls, mask: npt.NDArray[np.bool_]) -> Array:
    """Every call priced at one tier's USD per input and output token (least squares, not negative)."""
    tokens = np.column_stack([calls.input_tokens, calls.output_tokens])
    rates, *_ = np.linalg.lstsq(tokens[mask], calls.cost[mask], rcond=None)
    result: Array = tokens @ np.clip(rates, 0.0, None)
    return result


def _sigmoid(z: Array) -> Array:
    result: Array = 1.0 / (1.0 + np.exp(-np.clip(z, -40.0, 40.0)))
    return result


def _auc(scores: Array, labels: Array) -> float | None:
    positives, negatives = scores[labels == 1], scores[labels == 0]
    if not len(positives) or not len(negatives):
        return None
    wins = (positives[:, None] > negatives[None, :]).sum() + 0.5 * (
        positives[:, None] == negatives[None, :]
    ).sum()
    return float(wins / (len(positives) * len(negatives)))


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)
