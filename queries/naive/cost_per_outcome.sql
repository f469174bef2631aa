-- cost_per_outcome: Cost per resolved task, per workflow, for the tasks that started in the window.
-- Cohort: a task (task_id) belongs to the window in which its FIRST call started, i.e. the
-- min(ts_start) over every trace carrying its task_id lies in [from, to). Later calls of
-- that task count even when they fall after `to`; tasks whose first call precedes `from`
-- are out, with all their calls.
-- Numerator: cost_usd summed over ALL traces carrying the task_id: retries, fallbacks,
-- failed, blocked and over-budget calls, and judge calls (workflow_id 'fleetdeck-judge',
-- carrying the judged task's task_id). evals.judge_cost_usd is not added: the judge's
-- calls are already traces, adding it would count them twice. A NULL cost counts as 0.
-- Workflow of a task: outcomes.workflow_id when its outcome names one, else the
-- workflow_id of its first non-judge trace that has one (earliest ts_start, ties by
-- request_id); NULL when there is none, and such tasks form one workflow_id NULL row.
-- Denominator: the cohort's tasks whose outcome status is 'resolved'; tasks with no
-- outcome yet (open_tasks) cost money but resolve nothing.
-- cost_per_outcome_usd = total_cost_usd / resolved_tasks, NULL when nothing resolved.
-- One row per workflow, no total row. Outcomes with no trace are not in any cohort.
-- param from: TIMESTAMP = `to` - 30 days | start of the window, inclusive (UTC)
-- param to: TIMESTAMP = now | end of the window, exclusive (UTC)
-- param workflow: VARCHAR = all | only this workflow_id
-- users: cost pane, scorecard, fleetdeck query --name cost_per_outcome
WITH bounds AS (
    SELECT
        coalesce($to::TIMESTAMP, (now() AT TIME ZONE 'UTC')::TIMESTAMP) AS window_end,
        coalesce($from::TIMESTAMP, window_end - INTERVAL 30 DAY) AS window_start
),

task_calls AS (
    SELECT
        task_id,
        min(ts_start) AS first_call_at,
        count(*) AS calls,
        count(*) FILTER (WHERE workflow_id = 'fleetdeck-judge') AS judge_calls,
        coalesce(sum(cost_usd), 0) AS cost_usd,
        coalesce(sum(cost_usd) FILTER (WHERE workflow_id = 'fleetdeck-judge'), 0) AS judge_cost_usd,
        arg_min(workflow_id, (ts_start, request_id))
            FILTER (WHERE workflow_id IS NOT NULL AND workflow_id <> 'fleetdeck-judge') AS first_workflow_id
    FROM traces
    WHERE task_id IS NOT NULL
    GROUP BY task_id
),

cohort AS (
    SELECT
        task_calls.*,
        coalesce(outcomes.workflow_id, task_calls.first_workflow_id) AS workflow_id,
        outcomes.status AS outcome
    FROM task_calls
    CROSS JOIN bounds
    LEFT JOIN outcomes USING (task_id)
    WHERE task_calls.first_call_at >= bounds.window_start
      AND task_calls.first_call_at < bounds.window_end
)

SELECT
    workflow_id,
    count(*) AS tasks,
    count(*) FILTER (WHERE outcome = 'resolved') AS resolved_tasks,
    count(*) FILTER (WHERE outcome = 'failed') AS failed_tasks,
    count(*) FILTER (WHERE outcome = 'abandoned') AS abandoned_tasks,
    count(*) FILTER (WHERE outcome IS NULL) AS open_tasks,
    sum(cost_usd) AS total_cost_usd,
    sum(cost_usd) / nullif(resolved_tasks, 0) AS cost_per_outcome_usd,
    sum(judge_cost_usd) AS judge_cost_usd,
    sum(calls)::BIGINT AS calls,
    sum(judge_calls)::BIGINT AS judge_calls
FROM cohort
WHERE $workflow::VARCHAR IS NULL OR workflow_id = $workflow::VARCHAR
GROUP BY workflow_id
ORDER BY workflow_id NULLS LAST
