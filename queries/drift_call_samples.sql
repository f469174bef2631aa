-- drift_call_samples: Output tokens and latency of served calls per workflow, in the recent window and the baseline.
-- Served calls: status ok or partial (a model answered, not from the cache), by the period
-- in which they started: 'current' is the `days` days before `as_of`, 'baseline' the
-- `baseline_days` days before that. Judge calls (workflow 'fleetdeck-judge') are left out.
-- At most `sample_size` calls per workflow and period, picked by a hash of request_id, so
-- the same store always gives the same sample.
-- One row per sampled call: workflow_id, period, output_tokens, latency_ms.
-- param as_of: TIMESTAMP = now | end of the recent window, exclusive (UTC)
-- param days: INTEGER = 7 | length of the recent window in days
-- param baseline_days: INTEGER = 28 | length of the baseline window in days, just before the recent one
-- param workflow: VARCHAR = all | only this workflow_id
-- param sample_size: INTEGER = 20000 | at most this many calls per workflow and period
-- users: fleetdeck drift, drift pane, engine drift monitor
WITH bounds AS (
    SELECT
        coalesce($as_of::TIMESTAMP, (now() AT TIME ZONE 'UTC')::TIMESTAMP) AS window_end,
        window_end - to_days(coalesce($days::INTEGER, 7)) AS window_start,
        window_start - to_days(coalesce($baseline_days::INTEGER, 28)) AS baseline_start
)

SELECT
    traces.workflow_id,
    CASE WHEN traces.ts_start >= bounds.window_start THEN 'current' ELSE 'baseline' END AS period,
    traces.output_tokens,
    traces.latency_ms
FROM traces
CROSS JOIN bounds
WHERE traces.ts_start >= bounds.baseline_start
  AND traces.ts_start < bounds.window_end
  AND traces.status IN ('ok', 'partial')
  AND traces.workflow_id IS NOT NULL
  AND traces.workflow_id <> 'fleetdeck-judge'
  AND ($workflow::VARCHAR IS NULL OR traces.workflow_id = $workflow::VARCHAR)
QUALIFY row_number() OVER (PARTITION BY traces.workflow_id, period ORDER BY hash(traces.request_id))
    <= coalesce($sample_size::INTEGER, 20000)
