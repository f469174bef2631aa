"""Drift per workflow: a recent window against the baseline before it, and the alerts it raises.

Windows: the `days` days before `as_of` (default 7, ending now) against the
`baseline_days` before them (default 28). Only changes for the worse raise an alert;
a change for the better is reported as a statistic and stays quiet.

Statistics and thresholds:

- Verdict mix (correct / partial / incorrect, all components of the workflow): the
  Jensen–Shannon distance (scipy, natural log, as Evidently computes it) and the
  population stability index (empty categories count as 0.0001, as Evidently does).
  Each warns at 0.1 and alerts at 0.25; the worse of the two decides. A mix counts as
  worse when its mean score (correct 1, partial 0.5, incorrect 0) fell, and as changed
  only when the chi-square test of the two windows' counts gives p < 0.01 (a hundred
  verdicts a week reach a distance of 0.1 from noise alone).
- Rates per component: the schema-valid rate per route, the Incorrect rate per judged
  component. An alert when the rate moved more than 10 % (relative) for the worse and
  Fisher's exact test, one-sided in that direction, gives p < 0.01: a week of 100
  verdicts moves by 10 % from noise alone, and a dozen rates are tested every time
  drift runs, so the size of a change alone would alert every week.
- Output tokens and latency of served calls: as Evidently picks its test, the
  two-sample Kolmogorov–Smirnov test (drift when p < 0.05) while the baseline has at
  most 1000 calls, else the Wasserstein distance divided by the baseline's standard
  deviation (drift at 0.1). Latency alerts only when its median rose; output length
  alerts either way (longer or shorter answers are both a change of behaviour).
  Both are warnings: they say something changed, not that it got wrong.
- Cost per outcome (closed tasks' cost / resolved tasks, per day the tasks started):
  an alert when the median day's rose by more than 10 % and the days of the recent
  window cost more than the baseline's by the one-sided Mann–Whitney U test (p < 0.01;
  one normal week moves the median day by 10 %). The median day, because
  drift is a lasting shift: a one-day spike (a runaway agent, a backfill job, an
  outage served by dearer fallbacks) is an incident for budgets and cost-spike alerts,
  and it would move a whole week's ratio.

Minimum samples: 30 verdicts, checked outputs, served calls or resolved tasks in each
window, and for cost per outcome a baseline of 14 days with resolved tasks (what a
normal day costs needs more than a week of days); below that a statistic is reported
as "too few" and raises nothing.
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any

import duckdb
import numpy as np

from console.store import queries

# scipy is imported inside the statistics that use it: a second at every start otherwise.

WINDOW_DAYS = 7
BASELINE_DAYS = 28
MIN_SAMPLES = 30
VERDICTS = ("correct", "partial", "incorrect")
VERDICT_SCORES = {"correct": 1.0, "partial": 0.5, "incorrect": 0.0}
MIX_WARNING = 0.1
MIX_ALERT = 0.25
MIX_P_VALUE = 0.01
PSI_EMPTY_SHARE = 0.0001
RATE_CHANGE = 0.10
RATE_P_VALUE = 0.01
COST_CHANGE = 0.10
COST_P_VALUE = 0.01
MIN_BASELINE_DAYS = 14
KS_MAX_BASELINE = 1000
KS_P_VALUE = 0.05
WASSERSTEIN_DRIFT = 0.1


class Level(StrEnum):
    OK = "ok"
    WARNING = "warning"
    ALERT = "alert"
    TOO_FEW = "too few"

    @property
    def raises(self) -> bool:
        return self in (Level.WARNING, Level.ALERT)

    @property
    def severity(self) -> str:
        """The `alerts.severity` of a raised level."""
        return "critical" if self is Level.ALERT else "warning"


class Metric(StrEnum):
    VERDICT_MIX = "verdict_mix"
    INCORRECT_RATE = "incorrect_rate"
    SCHEMA_VALID_RATE = "schema_valid_rate"
    OUTPUT_TOKENS = "output_tokens"
    LATENCY_MS = "latency_ms"
    COST_PER_OUTCOME = "cost_per_outcome"


@dataclass(frozen=True, slots=True)
class Windows:
    as_of: datetime
    days: int = WINDOW_DAYS
    baseline_days: int = BASELINE_DAYS

    @property
    def start(self) -> datetime:
        return self.as_of - timedelta(days=self.days)

    @property
    def baseline_start(self) -> datetime:
        return self.start - timedelta(days=self.baseline_days)

    def params(self, workflow: str | None) -> dict[str, object]:
        return {
            "as_of": self.as_of,
            "days": self.days,
            "baseline_days": self.baseline_days,
            "workflow": workflow,
        }

    def slot(self) -> date:
        """The first day of the `days`-long slot (Monday-aligned) holding the window's last moment.

        An alert is raised once per slot, so an hourly monitor does not raise it again every hour.
        """
        last_day = (self.as_of - timedelta(microseconds=1)).date()
        start = (last_day.toordinal() - 1) // self.days * self.days + 1  # ordinal 1 is a Monday
        return date.fromordinal(start)


@dataclass(frozen=True, slots=True)
class Statistic:
    """One metric of one workflow (and component) in the recent window against the baseline."""

    workflow_id: str
    metric: Metric
    component: str | None
    baseline: float | None
    current: float | None
    baseline_n: int
    current_n: int
    test: str  # jensen-shannon+psi | fisher | ks | wasserstein | relative change
    score: float | None  # a distance, a p-value or a relative change, as `test` says
    level: Level
    detail: str = ""

    @property
    def change(self) -> float | None:
        """Relative change of the current value against the baseline."""
        if self.current is None or self.baseline is None or self.baseline == 0:
            return None
        return self.current / self.baseline - 1


@dataclass(frozen=True, slots=True)
class Measure:
    """What a statistic is about and the values it compares; `judged` makes the statistic."""

    workflow_id: str
    metric: Metric
    component: str | None
    baseline: float | None
    current: float | None
    baseline_n: int
    current_n: int

    def judged(self, test: str, score: float | None, level: Level, detail: str) -> Statistic:
        return Statistic(
            workflow_id=self.workflow_id,
            metric=self.metric,
            component=self.component,
            baseline=self.baseline,
            current=self.current,
            baseline_n=self.baseline_n,
            current_n=self.current_n,
            test=test,
            score=score,
            level=level,
            detail=detail,
        )


@dataclass(frozen=True, slots=True)
class Alert:
    alert_id: str
    ts: datetime
    workflow_id: str
    metric: str
    component: str | None
    baseline: float | None
    current: float | None
    delta: float | None
    severity: str
    message: str
    window_start: datetime
    window_end: datetime

    def row(self) -> dict[str, Any]:
        return {
            "alert_id": self.alert_id,
            "ts": self.ts,
            "kind": "drift",
            "workflow_id": self.workflow_id,
            "metric": self.metric,
            "baseline": self.baseline,
            "current": self.current,
            "delta": self.delta,
            "severity": self.severity,
            "message": self.message,
        }

    def as_json(self) -> dict[str, Any]:
        found = asdict(self)
        for name in ("ts", "window_start", "window_end"):
            found[name] = found[name].isoformat()
        return {"kind": "drift", **found}


@dataclass(frozen=True)
class DriftReport:
    windows: Windows
    statistics: list[Statistic] = field(default_factory=list)

    @property
    def raised(self) -> list[Statistic]:
        return [item for item in self.statistics if item.level.raises]

    def workflows(self) -> list[str]:
        return sorted({item.workflow_id for item in self.statistics})

    def alerts(self, raised_at: datetime) -> list[Alert]:
        return [_alert(item, self.windows, raised_at) for item in self.raised]


# -- loading -------------------------------------------------------------------------


@dataclass(frozen=True)
class DriftInputs:
    """The rows of the drift queries: both windows, every workflow."""

    verdicts: list[dict[str, Any]]
    schema_validity: list[dict[str, Any]]
    call_samples: dict[tuple[str, str], dict[str, np.ndarray[Any, np.dtype[np.float64]]]]
    cost_per_outcome: list[dict[str, Any]]


def load(cursor: duckdb.DuckDBPyConnection, windows: Windows, workflow: str | None = None) -> DriftInputs:
    params = windows.params(workflow)
    samples = queries.run(cursor, "drift_call_samples", params)
    return DriftInputs(
        verdicts=queries.run(cursor, "drift_verdicts", params).to_pylist(),
        schema_validity=queries.run(cursor, "drift_schema_validity", params).to_pylist(),
        call_samples=_samples(samples.to_pydict()),
        cost_per_outcome=queries.run(cursor, "drift_cost_per_outcome", params).to_pylist(),
    )


def _samples(columns: Mapping[str, list[Any]]) -> dict[tuple[str, str], dict[str, np.ndarray[Any, Any]]]:
    grouped: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for workflow, period, tokens, latency in zip(
        columns["workflow_id"],
        columns["period"],
        columns["output_tokens"],
        columns["latency_ms"],
        strict=True,
    ):
        if tokens is not None:
            grouped[workflow, period]["output_tokens"].append(float(tokens))
        if latency is not None:
            grouped[workflow, period]["latency_ms"].append(float(latency))
    return {
        key: {name: np.asarray(values, dtype=np.float64) for name, values in found.items()}
        for key, found in grouped.items()
    }


def compute(cursor: duckdb.DuckDBPyConnection, windows: Windows, workflow: str | None = None) -> DriftReport:
    return assess(load(cursor, windows, workflow), windows)


# -- assessing -------------------------------------------------------------------------


def assess(inputs: DriftInputs, windows: Windows) -> DriftReport:
    statistics = [
        *_verdict_statistics(inputs.verdicts),
        *_schema_statistics(inputs.schema_validity),
        *_sample_statistics(inputs.call_samples),
        *_cost_statistics(inputs.cost_per_outcome),
    ]
    order = list(Metric)
    statistics.sort(key=lambda item: (item.workflow_id, order.index(item.metric), item.component or ""))
    return DriftReport(windows, statistics)


def _verdict_statistics(rows: list[dict[str, Any]]) -> Iterable[Statistic]:
    # counts[workflow][component][period][verdict]
    counts: dict[str, dict[str, dict[str, dict[str, int]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(lambda: dict.fromkeys(VERDICTS, 0)))
    )
    for row in rows:
        counts[row["workflow_id"]][row["component"]][row["period"]][row["verdict"]] += int(row["verdicts"])
    for workflow, components in counts.items():
        pooled = {
            period: {verdict: sum(components[c][period][verdict] for c in components) for verdict in VERDICTS}
            for period in ("baseline", "current")
        }
        yield verdict_mix(workflow, pooled["baseline"], pooled["current"])
        for component, periods in components.items():
            baseline, current = periods["baseline"], periods["current"]
            yield rate_change(
                workflow,
                Metric.INCORRECT_RATE,
                component,
                (baseline["incorrect"], sum(baseline.values())),
                (current["incorrect"], sum(current.values())),
                worse_when_higher=True,
            )


def _schema_statistics(rows: list[dict[str, Any]]) -> Iterable[Statistic]:
    found: dict[tuple[str, str], dict[str, tuple[int, int]]] = defaultdict(dict)
    for row in rows:
        found[row["workflow_id"], row["component"]][row["period"]] = (int(row["valid"]), int(row["checked"]))
    for (workflow, component), periods in found.items():
        yield rate_change(
            workflow,
            Metric.SCHEMA_VALID_RATE,
            component,
            periods.get("baseline", (0, 0)),
            periods.get("current", (0, 0)),
            worse_when_higher=False,
        )


def _sample_statistics(
    samples: Mapping[tuple[str, str], Mapping[str, np.ndarray[Any, Any]]],
) -> Iterable[Statistic]:
    empty = np.empty(0, dtype=np.float64)
    for workflow in sorted({workflow for workflow, _ in samples}):
        baseline = samples.get((workflow, "baseline"), {})
        current = samples.get((workflow, "current"), {})
        for metric, either_way in ((Metric.OUTPUT_TOKENS, True), (Metric.LATENCY_MS, False)):
            yield distribution_shift(
                workflow,
                metric,
                baseline.get(metric.value, empty),
                current.get(metric.value, empty),
                either_way=either_way,
            )


def _cost_statistics(rows: list[dict[str, Any]]) -> Iterable[Statistic]:
    days: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        days[row["workflow_id"]][row["period"]].append(row)
    for workflow, periods in days.items():
        yield cost_change(workflow, periods["baseline"], periods["current"])


# -- the statistics ---------------------------------------------------------------------


def verdict_mix(workflow: str, baseline: Mapping[str, int], current: Mapping[str, int]) -> Statistic:
    from scipy.spatial import distance

    base_n, cur_n = sum(baseline.values()), sum(current.values())
    base_score = _mean_score(baseline)
    cur_score = _mean_score(current)
    measure = Measure(workflow, Metric.VERDICT_MIX, None, base_score, cur_score, base_n, cur_n)
    if min(base_n, cur_n) < MIN_SAMPLES:
        return measure.judged("jensen-shannon+psi", None, Level.TOO_FEW, f"fewer than {MIN_SAMPLES} verdicts")
    reference = np.array([baseline[v] for v in VERDICTS], dtype=np.float64) / base_n
    recent = np.array([current[v] for v in VERDICTS], dtype=np.float64) / cur_n
    js = float(distance.jensenshannon(reference, recent))
    psi = population_stability_index(reference, recent)
    worst = max(js, psi)
    p = _chi_square_p(baseline, current)
    level = Level.OK
    if cur_score is not None and base_score is not None and cur_score < base_score and p < MIX_P_VALUE:
        level = Level.ALERT if worst >= MIX_ALERT else Level.WARNING if worst >= MIX_WARNING else Level.OK
    detail = f"JS {js:.3f}, PSI {psi:.3f}, chi-square p = {p:.2g}; " + ", ".join(
        f"{v} {reference[i]:.0%}→{recent[i]:.0%}" for i, v in enumerate(VERDICTS)
    )
    return measure.judged("jensen-shannon+psi", worst, level, detail)


def _chi_square_p(baseline: Mapping[str, int], current: Mapping[str, int]) -> float:
    from scipy import stats

    seen = [v for v in VERDICTS if baseline[v] + current[v] > 0]
    if len(seen) < 2:
        return 1.0
    table = [[baseline[v] for v in seen], [current[v] for v in seen]]
    return float(stats.chi2_contingency(table).pvalue)


def population_stability_index(
    reference: np.ndarray[Any, np.dtype[np.float64]], current: np.ndarray[Any, np.dtype[np.float64]]
) -> float:
    ref = np.where(reference == 0, PSI_EMPTY_SHARE, reference)
    cur = np.where(current == 0, PSI_EMPTY_SHARE, current)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def _mean_score(counts: Mapping[str, int]) -> float | None:
    total = sum(counts.values())
    if total == 0:
        return None
    return sum(VERDICT_SCORES[v] * n for v, n in counts.items()) / total


def rate_change(
    workflow: str,
    metric: Metric,
    component: str,
    baseline: tuple[int, int],
    current: tuple[int, int],
    *,
    worse_when_higher: bool,
) -> Statistic:
    """(hits, total) in each window; alerts when the rate moved > 10 % for the worse, significantly."""
    from scipy import stats

    (base_hits, base_n), (cur_hits, cur_n) = baseline, current
    base_rate = base_hits / base_n if base_n else None
    cur_rate = cur_hits / cur_n if cur_n else None
    measure = Measure(workflow, metric, component, base_rate, cur_rate, base_n, cur_n)
    if min(base_n, cur_n) < MIN_SAMPLES or base_rate is None or cur_rate is None:
        return measure.judged("fisher", None, Level.TOO_FEW, f"fewer than {MIN_SAMPLES} in a window")
    table = np.array([[cur_hits, cur_n - cur_hits], [base_hits, base_n - base_hits]], dtype=np.int64)
    _, p_value = stats.fisher_exact(table, alternative="greater" if worse_when_higher else "less")
    p = float(p_value)
    moved = cur_rate - base_rate if worse_when_higher else base_rate - cur_rate
    relative = moved / base_rate if base_rate else math.inf if moved > 0 else 0.0
    drifted = moved > 0 and relative > RATE_CHANGE and p < RATE_P_VALUE
    detail = f"{base_rate:.1%} → {cur_rate:.1%}, one-sided Fisher p = {p:.2g}"
    return measure.judged("fisher", p, Level.ALERT if drifted else Level.OK, detail)


def distribution_shift(
    workflow: str,
    metric: Metric,
    baseline: np.ndarray[Any, np.dtype[np.float64]],
    current: np.ndarray[Any, np.dtype[np.float64]],
    *,
    either_way: bool,
) -> Statistic:
    from scipy import stats

    base_n, cur_n = len(baseline), len(current)
    base_median = float(np.median(baseline)) if base_n else None
    cur_median = float(np.median(current)) if cur_n else None
    measure = Measure(workflow, metric, None, base_median, cur_median, base_n, cur_n)
    if min(base_n, cur_n) < MIN_SAMPLES or base_median is None or cur_median is None:
        test = "ks" if base_n <= KS_MAX_BASELINE else "wasserstein"
        return measure.judged(test, None, Level.TOO_FEW, f"fewer than {MIN_SAMPLES} served calls in a window")
    if base_n <= KS_MAX_BASELINE:
        test, score = "ks", float(stats.ks_2samp(baseline, current).pvalue)
        shifted, detail = score < KS_P_VALUE, f"KS p = {score:.2g}"
    else:
        spread = max(float(np.std(baseline)), 0.001)
        test, score = "wasserstein", float(stats.wasserstein_distance(baseline, current)) / spread
        shifted, detail = score >= WASSERSTEIN_DRIFT, f"normalised Wasserstein {score:.3f}"
    worse = either_way or cur_median > base_median
    level = Level.WARNING if shifted and worse else Level.OK
    return measure.judged(test, score, level, f"median {base_median:g} → {cur_median:g}, {detail}")


def cost_change(
    workflow: str, baseline_days: Sequence[Mapping[str, Any]], current_days: Sequence[Mapping[str, Any]]
) -> Statistic:
    """The median day's cost per resolved task in each window; alerts when it rose more than 10 %."""
    from scipy import stats

    base_n = sum(int(day["resolved_tasks"]) for day in baseline_days)
    cur_n = sum(int(day["resolved_tasks"]) for day in current_days)
    base_cost, cur_cost = _median_day(baseline_days), _median_day(current_days)
    measure = Measure(workflow, Metric.COST_PER_OUTCOME, None, base_cost, cur_cost, base_n, cur_n)
    too_few = None
    if min(base_n, cur_n) < MIN_SAMPLES or base_cost is None or cur_cost is None or base_cost <= 0:
        too_few = f"fewer than {MIN_SAMPLES} resolved tasks in a window"
    elif len(_day_costs(baseline_days)) < MIN_BASELINE_DAYS:
        too_few = f"a baseline of fewer than {MIN_BASELINE_DAYS} days"
    if too_few is not None or base_cost is None or cur_cost is None:
        return measure.judged("median day", None, Level.TOO_FEW, too_few or "no resolved task")
    relative = cur_cost / base_cost - 1
    dearer = stats.mannwhitneyu(_day_costs(current_days), _day_costs(baseline_days), alternative="greater")
    p = float(dearer.pvalue)
    drifted = relative > COST_CHANGE and p < COST_P_VALUE
    detail = (
        f"${base_cost:.5f} → ${cur_cost:.5f} per resolved task on the median day ({relative:+.0%}), "
        f"one-sided Mann-Whitney p = {p:.2g}"
    )
    return measure.judged("median day", relative, Level.ALERT if drifted else Level.OK, detail)


def _day_costs(days: Sequence[Mapping[str, Any]]) -> list[float]:
    return [float(day["cost_per_outcome_usd"]) for day in days if day["cost_per_outcome_usd"] is not None]


def _median_day(days: Sequence[Mapping[str, Any]]) -> float | None:
    costs = _day_costs(days)
    return float(np.median(costs)) if costs else None


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def value_text(metric: str, number: float | None) -> str:
    """A statistic's baseline or current value as people read it."""
    if number is None:
        return "-"
    if metric.endswith(("_rate", "_share")):
        return f"{number:.1%}"
    if metric == Metric.VERDICT_MIX:
        return f"score {number:.2f}"
    if metric == Metric.COST_PER_OUTCOME:
        return f"${number:.5f}"
    if metric == Metric.LATENCY_MS:
        return f"{number:,.0f} ms"
    return f"{number:,.0f}"


# -- alerts ------------------------------------------------------------------------------


def _alert(item: Statistic, windows: Windows, raised_at: datetime) -> Alert:
    slot = windows.slot()
    key = "|".join(
        [item.workflow_id, item.metric.value, item.component or "", slot.isoformat(), item.level.severity]
    )
    where = f"{item.workflow_id}" + (f" / {item.component}" if item.component else "")
    message = (
        f"drift in {where}: {item.metric.value.replace('_', ' ')} {item.detail} "
        f"({windows.start:%Y-%m-%d %H:%M} to {windows.as_of:%Y-%m-%d %H:%M} against the "
        f"{windows.baseline_days} days before)"
    )
    return Alert(
        alert_id="drift-" + hashlib.sha256(key.encode()).hexdigest()[:24],
        ts=raised_at,
        workflow_id=item.workflow_id,
        metric=item.metric.value,
        component=item.component,
        baseline=item.baseline,
        current=item.current,
        delta=item.change,
        severity=item.level.severity,
        message=message,
        window_start=windows.start,
        window_end=windows.as_of,
    )
