-- task_timeline: Every call of one task (its steps) in order, with each one's cost and the running total.
-- param task_id: VARCHAR = none | the task
-- users: trace view (the task's steps), fleetdeck query --name task_timeline
SELECT
    request_id,
    ts_start,
    step,
    workflow_id,
    route,
    coalesce(response_model, request_model) AS model,
    status,
    latency_ms,
    cost_usd,
    sum(coalesce(cost_usd, 0)) OVER (ORDER BY ts_start, request_id) AS running_cost_usd
FROM traces
WHERE task_id = $task_id::VARCHAR
ORDER BY ts_start, request_id
