-- cost_per_outcome_trend: Cost per resolved task per workflow and UTC day, for a trend line.
-- The cohorts of cost_per_outcome, one per day: a task belongs to the UTC day of its
-- FIRST call, its cost is every call carrying its task_id (judge calls included), and its
-- workflow is outcomes.workflow_id, else the workflow of its first non-judge call.
-- cost_per_outcome_usd = total_cost_usd / resolved_tasks, NULL on a day nothing resolved.
-- Days with no task of the workflow have no row.
-- param from: TIMESTAMP = `to` - 14 days | start of the window, inclusive (UTC)
-- param to: TIMESTAMP = now | end of the window, exclusive (UTC)
-- param workflow: VARCHAR = all | only this workflow_id
-- users: cost pane, fleetdeck query --name cost_per_outcome_trend
WITH bounds AS (
    SELECT
        coalesce($to::TIMESTAMP, (now() AT TIME ZONE 'UTC')::TIMESTAMP) AS window_end,
        coalesce($from::TIMESTAMP, window_end - INTERVAL 14 DAY) AS window_start
),

task_calls AS (
    SELECT
        task_id,
        min(ts_start) AS first_call_at,
        coalesce(sum(cost_usd), 0) AS cost_usd,
        arg_min(workflow_id, (ts_start, request_id))
            FILTER (WHERE workflow_id IS NOT NULL AND workflow_id <> 'fleetdeck-judge') AS first_workflow_id
    FROM traces
    WHERE task_id IS NOT NULL
    GROUP BY task_id
),

cohort AS (
    SELECT
        task_calls.first_call_at::DATE AS day,
        task_calls.cost_usd,
        coalesce(outcomes.workflow_id, task_calls.first_workflow_id) AS workflow_id,
        outcomes.status AS outcome
    FROM task_calls
    CROSS JOIN bounds
    LEFT JOIN outcomes USING (task_id)
    WHERE task_calls.first_call_at >= bounds.window_start
      AND task_calls.first_call_at < bounds.window_end
)

SELECT
    day,
    workflow_id,
    count(*) AS tasks,
    count(*) FILTER (WHERE outcome = 'resolved') AS resolved_tasks,
    sum(cost_usd) AS total_cost_usd,
    sum(cost_usd) / nullif(resolved_tasks, 0) AS cost_per_outcome_usd
FROM cohort
WHERE $workflow::VARCHAR IS NULL OR workflow_id = $workflow::VARCHAR
GROUP BY day, workflow_id
ORDER BY workflow_id NULLS LAST, day
