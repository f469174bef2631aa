-- task_steps: Calls per task over the last day, where the fan-out cap (max_steps_per_task) starts from.
-- One row per task_id with at least one trace since `since`; steps counts every call of
-- the task, refused ones included, as the gateway's counter does.
-- param since: TIMESTAMP = now - 1 day | count calls that started at or after this (UTC)
-- users: gateway fan-out cap, fleetdeck query --name task_steps
SELECT
    traces.task_id,
    count(*) AS steps
FROM traces
WHERE traces.task_id IS NOT NULL
  AND traces.ts_start >= coalesce($since::TIMESTAMP, (now() AT TIME ZONE 'UTC')::TIMESTAMP - INTERVAL 1 DAY)
GROUP BY traces.task_id
ORDER BY traces.task_id
