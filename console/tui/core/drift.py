"""Quality drift per workflow: the last week's metrics against the four weeks before.

The thresholds here only highlight; the quality issue brings the statistics (tests,
alerts) that decide.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import duckdb

from console.store import queries

WINDOW_DAYS = 7
BASELINE_DAYS = 28


@dataclass(frozen=True, slots=True)
class Metric:
    name: str
    key: str  # column in drift_summary
    kind: str  # "share", "ms" or "tokens"
    worse: Callable[[float, float], bool]  # (current, baseline) -> drifted for the worse


def _rises(absolute: float, relative: float) -> Callable[[float, float], bool]:
    return lambda cur, base: cur - base > absolute and cur > base * (1 + relative)


def _falls(absolute: float) -> Callable[[float, float], bool]:
    return lambda cur, base: base - cur > absolute


def _moves(relative: float) -> Callable[[float, float], bool]:
    return lambda cur, base: base > 0 and abs(cur - base) / base > relative


METRICS = (
    Metric("error rate", "error_rate", "share", _rises(0.01, 0.5)),
    Metric("latency p95", "latency_p95_ms", "ms", _rises(100, 0.25)),
    Metric("schema valid", "schema_valid_rate", "share", _falls(0.02)),
    Metric("output length", "output_tokens_mean", "tokens", _moves(0.3)),
    Metric("judged correct", "correct_share", "share", _falls(0.05)),
    Metric("judged incorrect", "incorrect_share", "share", _rises(0.03, 0.3)),
)


@dataclass(frozen=True, slots=True)
class Reading:
    metric: Metric
    current: float | None
    baseline: float | None

    @property
    def drifted(self) -> bool:
        if self.current is None or self.baseline is None:
            return False
        return self.metric.worse(self.current, self.baseline)


@dataclass(frozen=True)
class WorkflowDrift:
    workflow_id: str | None
    calls: int
    baseline_calls: int
    judged: int
    readings: list[Reading]

    @property
    def alerts(self) -> list[Reading]:
        return [reading for reading in self.readings if reading.drifted]


def snapshot(cur: duckdb.DuckDBPyConnection, now: datetime) -> list[WorkflowDrift]:
    params = {"to": now, "days": WINDOW_DAYS, "baseline_days": BASELINE_DAYS}
    return [_workflow(row) for row in queries.run(cur, "drift_summary", params).to_pylist()]


def _workflow(row: dict[str, Any]) -> WorkflowDrift:
    readings = [
        Reading(metric, _float(row[metric.key]), _float(row[f"baseline_{metric.key}"])) for metric in METRICS
    ]
    return WorkflowDrift(row["workflow_id"], row["calls"], row["baseline_calls"], row["judged"], readings)


def _float(value: Any) -> float | None:
    return None if value is None else float(value)
