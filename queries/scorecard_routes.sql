-- scorecard_routes: Calls, spend and attempted calls per workflow and route: which routes each workflow uses.
-- Window: traces whose ts_start lies in [from, to). attempted: status ok, partial or
-- error. spend_usd: sum of cost_usd, NULL as 0. Used to pair a workflow with the routes
-- (and so the route SLOs and route budget caps) that serve it.
-- param from: TIMESTAMP = `to` - 30 days | start of the window, inclusive (UTC)
-- param to: TIMESTAMP = now | end of the window, exclusive (UTC)
-- param workflows: VARCHAR = all | only these workflow_ids, comma-separated
-- users: scorecard, fleetdeck query --name scorecard_routes
WITH bounds AS (
    SELECT
        coalesce($to::TIMESTAMP, (now() AT TIME ZONE 'UTC')::TIMESTAMP) AS window_end,
        coalesce($from::TIMESTAMP, window_end - INTERVAL 30 DAY) AS window_start
)

SELECT
    traces.workflow_id,
    traces.route,
    count(*) AS calls,
    count(*) FILTER (WHERE traces.status IN ('ok', 'partial', 'error')) AS attempted,
    coalesce(sum(traces.cost_usd), 0) AS spend_usd
FROM traces
CROSS JOIN bounds
WHERE traces.ts_start >= bounds.window_start
  AND traces.ts_start < bounds.window_end
  AND (
      $workflows::VARCHAR IS NULL
      OR list_contains(string_split($workflows::VARCHAR, ','), traces.workflow_id)
  )
GROUP BY traces.workflow_id, traces.route
ORDER BY traces.workflow_id NULLS LAST, traces.route NULLS LAST
