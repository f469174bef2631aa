-- drift_schema_validity: Schema-valid outputs per workflow and component (route), in the recent window and the baseline.
-- Calls whose output had a schema check (schema_valid not NULL), by the period in which
-- they started: 'current' is the `days` days before `as_of`, 'baseline' the
-- `baseline_days` days before that. The component is the route (intent). Judge calls
-- (workflow 'fleetdeck-judge') are left out.
-- One row per workflow, period and component: checked calls and how many were valid.
-- param as_of: TIMESTAMP = now | end of the recent window, exclusive (UTC)
-- param days: INTEGER = 7 | length of the recent window in days
-- param baseline_days: INTEGER = 28 | length of the baseline window in days, just before the recent one
-- param workflow: VARCHAR = all | only this workflow_id
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
    coalesce(traces.route, traces.intent, '(no route)') AS component,
    count(*) AS checked,
    count(*) FILTER (WHERE traces.schema_valid) AS valid
FROM traces
CROSS JOIN bounds
WHERE traces.ts_start >= bounds.baseline_start
  AND traces.ts_start < bounds.window_end
  AND traces.schema_valid IS NOT NULL
  AND traces.workflow_id IS NOT NULL
  AND traces.workflow_id <> 'fleetdeck-judge'
  AND ($workflow::VARCHAR IS NULL OR traces.workflow_id = $workflow::VARCHAR)
GROUP BY ALL
ORDER BY workflow_id, period, component
