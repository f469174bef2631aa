-- scorecard_daily: Calls, spend and errors per UTC day and workflow, for the scorecard's trend charts.
-- Days are UTC calendar days of ts_start, for traces whose ts_start lies in [from, to).
-- attempted: status ok, partial or error; errors: status error or partial; spend_usd: sum
-- of cost_usd, NULL as 0. Days without a call of the workflow have no row.
-- param from: TIMESTAMP = `to` - 60 days | start of the window, inclusive (UTC)
-- param to: TIMESTAMP = now | end of the window, exclusive (UTC)
-- param workflows: VARCHAR = all | only these workflow_ids, comma-separated
-- users: scorecard, fleetdeck query --name scorecard_daily
WITH bounds AS (
    SELECT
        coalesce($to::TIMESTAMP, (now() AT TIME ZONE 'UTC')::TIMESTAMP) AS window_end,
        coalesce($from::TIMESTAMP, window_end - INTERVAL 60 DAY) AS window_start
)

SELECT
    traces.ts_start::DATE AS day,
    traces.workflow_id,
    count(*) AS calls,
    coalesce(sum(traces.cost_usd), 0) AS spend_usd,
    count(*) FILTER (WHERE traces.status IN ('ok', 'partial', 'error')) AS attempted,
    count(*) FILTER (WHERE traces.status IN ('error', 'partial')) AS errors
FROM traces
CROSS JOIN bounds
WHERE traces.ts_start >= bounds.window_start
  AND traces.ts_start < bounds.window_end
  AND (
      $workflows::VARCHAR IS NULL
      OR list_contains(string_split($workflows::VARCHAR, ','), traces.workflow_id)
  )
GROUP BY day, traces.workflow_id
ORDER BY day, traces.workflow_id NULLS LAST
