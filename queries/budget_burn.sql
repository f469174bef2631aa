-- budget_burn: Spend per UTC day, key and route, with over-budget rejections and the running total.
-- Caps live in the policy and the keys, not in the traces: set spend_usd against a daily
-- cap and cumulative_spend_usd (running total over the window's days, per key_id and
-- route) against a period cap. over_budget: calls refused with status over_budget.
-- Every trace counts; a NULL cost counts as 0.
-- param from: TIMESTAMP = `to` - 30 days | start of the window, inclusive (UTC)
-- param to: TIMESTAMP = now | end of the window, exclusive (UTC)
-- param key_id: VARCHAR = all | only this virtual key
-- param route: VARCHAR = all | only this route
-- users: cost pane, keys list, scorecard, fleetdeck query --name budget_burn
WITH bounds AS (
    SELECT
        coalesce($to::TIMESTAMP, (now() AT TIME ZONE 'UTC')::TIMESTAMP) AS window_end,
        coalesce($from::TIMESTAMP, window_end - INTERVAL 30 DAY) AS window_start
),

daily AS (
    SELECT
        traces.ts_start::DATE AS day,
        traces.key_id,
        traces.route,
        count(*) AS calls,
        coalesce(sum(traces.cost_usd), 0) AS spend_usd,
        count(*) FILTER (WHERE traces.status = 'over_budget') AS over_budget
    FROM traces
    CROSS JOIN bounds
    WHERE traces.ts_start >= bounds.window_start
      AND traces.ts_start < bounds.window_end
      AND ($key_id::VARCHAR IS NULL OR traces.key_id = $key_id::VARCHAR)
      AND ($route::VARCHAR IS NULL OR traces.route = $route::VARCHAR)
    GROUP BY day, traces.key_id, traces.route
)

SELECT
    day,
    key_id,
    route,
    calls,
    spend_usd,
    over_budget,
    sum(spend_usd) OVER (PARTITION BY key_id, route ORDER BY day) AS cumulative_spend_usd
FROM daily
ORDER BY day, key_id NULLS LAST, route NULLS LAST
