-- drift_summary: Per workflow, quality metrics of the recent window against the baseline window before it.
-- Window: the `days` days before `to`; baseline: the `baseline_days` days before the window.
-- Judge calls (workflow 'fleetdeck-judge') are left out. error_rate: status error or
-- partial over calls sent to a model (ok, partial, error). latency_p95_ms: over those calls.
-- schema_valid_rate: share of schema_valid true among calls with a schema check.
-- output_tokens_mean: over ok calls. correct_share / incorrect_share: verdicts of the evals
-- of the window's calls (judged: how many evals). Metrics with no data are NULL.
-- One row per workflow with calls in the window or the baseline.
-- param to: TIMESTAMP = now | end of the recent window, exclusive (UTC)
-- param days: INTEGER = 7 | length of the recent window in days
-- param baseline_days: INTEGER = 28 | length of the baseline window in days, just before the recent one
-- users: fleetdeck query --name drift_summary (the drift pane uses the drift_* queries)
WITH bounds AS (
    SELECT
        coalesce($to::TIMESTAMP, (now() AT TIME ZONE 'UTC')::TIMESTAMP) AS window_end,
        window_end - to_days(coalesce($days::INTEGER, 7)) AS window_start,
        window_start - to_days(coalesce($baseline_days::INTEGER, 28)) AS baseline_start
),

labelled AS (
    SELECT
        traces.*,
        CASE WHEN traces.ts_start >= bounds.window_start THEN 'current' ELSE 'baseline' END AS period
    FROM traces
    CROSS JOIN bounds
    WHERE traces.ts_start >= bounds.baseline_start
      AND traces.ts_start < bounds.window_end
      AND traces.workflow_id IS DISTINCT FROM 'fleetdeck-judge'
),

verdicts AS (
    SELECT
        labelled.workflow_id,
        labelled.period,
        count(*) AS judged,
        count(*) FILTER (WHERE evals.verdict = 'correct') / count(*) AS correct_share,
        count(*) FILTER (WHERE evals.verdict = 'incorrect') / count(*) AS incorrect_share
    FROM evals
    INNER JOIN labelled USING (request_id)
    GROUP BY ALL
),

metrics AS (
    SELECT
        workflow_id,
        period,
        count(*) AS calls,
        count(*) FILTER (WHERE status IN ('error', 'partial'))
            / nullif(count(*) FILTER (WHERE status IN ('ok', 'partial', 'error')), 0) AS error_rate,
        quantile_cont(latency_ms, 0.95) FILTER (WHERE status IN ('ok', 'partial', 'error')) AS latency_p95_ms,
        avg(schema_valid::INTEGER) AS schema_valid_rate,
        avg(output_tokens) FILTER (WHERE status = 'ok') AS output_tokens_mean
    FROM labelled
    GROUP BY ALL
),

joined AS (
    SELECT metrics.*, verdicts.judged, verdicts.correct_share, verdicts.incorrect_share
    FROM metrics
    LEFT JOIN verdicts USING (workflow_id, period)
)

SELECT
    coalesce(cur.workflow_id, base.workflow_id) AS workflow_id,
    coalesce(cur.calls, 0) AS calls,
    coalesce(base.calls, 0) AS baseline_calls,
    cur.error_rate,
    base.error_rate AS baseline_error_rate,
    cur.latency_p95_ms,
    base.latency_p95_ms AS baseline_latency_p95_ms,
    cur.schema_valid_rate,
    base.schema_valid_rate AS baseline_schema_valid_rate,
    cur.output_tokens_mean,
    base.output_tokens_mean AS baseline_output_tokens_mean,
    coalesce(cur.judged, 0) AS judged,
    cur.correct_share,
    base.correct_share AS baseline_correct_share,
    cur.incorrect_share,
    base.incorrect_share AS baseline_incorrect_share
FROM (SELECT * FROM joined WHERE period = 'current') AS cur
FULL OUTER JOIN (SELECT * FROM joined WHERE period = 'baseline') AS base USING (workflow_id)
ORDER BY workflow_id NULLS LAST
