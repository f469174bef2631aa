-- spend_by_route_daily: Calls, spend and tokens per UTC day and route.
-- Every trace counts, whatever its status (blocked and over-budget calls cost 0 but are
-- calls). Days are UTC calendar days of ts_start; a NULL cost or token count counts as 0.
-- param from: TIMESTAMP = `to` - 30 days | start of the window, inclusive (UTC)
-- param to: TIMESTAMP = now | end of the window, exclusive (UTC)
-- param route: VARCHAR = all | only this route
-- users: cost pane, scorecard, fleetdeck query --name spend_by_route_daily
WITH bounds AS (
    SELECT
        coalesce($to::TIMESTAMP, (now() AT TIME ZONE 'UTC')::TIMESTAMP) AS window_end,
        coalesce($from::TIMESTAMP, window_end - INTERVAL 30 DAY) AS window_start
),

windowed AS (
    SELECT traces.*
    FROM traces
    CROSS JOIN bounds
    WHERE traces.ts_start >= bounds.window_start
      AND traces.ts_start < bounds.window_end
      AND ($route::VARCHAR IS NULL OR traces.route = $route::VARCHAR)
)

SELECT
    ts_start::DATE AS day,
    route,
    count(*) AS calls,
    coalesce(sum(cost_usd), 0) AS cost_usd,
    coalesce(sum(input_tokens), 0)::BIGINT AS input_tokens,
    coalesce(sum(output_tokens), 0)::BIGINT AS output_tokens,
    coalesce(sum(cache_read_tokens), 0)::BIGINT AS cache_read_tokens,
    coalesce(sum(reasoning_tokens), 0)::BIGINT AS reasoning_tokens
FROM windowed
GROUP BY day, route
ORDER BY day, route NULLS LAST
