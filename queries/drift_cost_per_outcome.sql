-- drift_cost_per_outcome: Cost per resolved task per workflow and day, in the recent window and the baseline, over closed tasks.
-- A task belongs to the period and the day (UTC) in which its first call started: 'current' is the `days`
-- days before `as_of`, 'baseline' the `baseline_days` days before that. Only tasks with an
-- outcome reported by `as_of` count (closed tasks), so the window's still-open tasks do
-- not inflate its cost per outcome. Cost: every call carrying the task_id, judge calls
-- included (as in cost_per_outcome), up to `as_of`; a NULL cost counts as 0. A task's first
-- call is looked for from a day before the baseline. Workflow: the outcome's.
-- cost_per_outcome_usd = cost of the closed tasks / resolved tasks, NULL when none resolved.
-- One row per workflow, period and day that has closed tasks.
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
),

task_calls AS (
    SELECT task_id, min(ts_start) AS first_call_at, coalesce(sum(cost_usd), 0) AS cost_usd
    FROM traces
    WHERE task_id IS NOT NULL
      AND ts_start >= (SELECT baseline_start FROM bounds) - INTERVAL 1 DAY
      AND ts_start < (SELECT window_end FROM bounds)
    GROUP BY task_id
)

SELECT
    outcomes.workflow_id,
    CASE WHEN task_calls.first_call_at >= bounds.window_start THEN 'current' ELSE 'baseline' END AS period,
    task_calls.first_call_at::DATE AS day,
    count(*) AS closed_tasks,
    count(*) FILTER (WHERE outcomes.status = 'resolved') AS resolved_tasks,
    sum(task_calls.cost_usd) AS cost_usd,
    sum(task_calls.cost_usd) / nullif(resolved_tasks, 0) AS cost_per_outcome_usd
FROM task_calls
CROSS JOIN bounds
INNER JOIN outcomes USING (task_id)
WHERE task_calls.first_call_at >= bounds.baseline_start
  AND task_calls.first_call_at < bounds.window_end
  AND outcomes.ts < bounds.window_end
  AND outcomes.workflow_id IS NOT NULL
  AND outcomes.workflow_id <> 'fleetdeck-judge'
  AND ($workflow::VARCHAR IS NULL OR outcomes.workflow_id = $workflow::VARCHAR)
GROUP BY ALL
ORDER BY workflow_id, period, day
