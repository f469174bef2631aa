-- spend_by_route_daily: Calls, spend and tokens per UTC day and route.
-- Every trace counts, whatever its status (blocked and over-budget calls cost 0 but are
-- calls). Days are UTC calendar days of ts_start; a NULL cost or token count counts as 0.
-- param from: TIMESTAMP = `to` - 30 days | start of the window, inclusive (UTC)
-- param to: TIMESTAMP = now | end of the window, exclusive (UTC)
-- param route: VARCHAR = all | only this route
-- Reads rollup_hourly for the window's whole hours and traces for the partial hours at
-- either end; equal to queries/naive/spend_by_route_daily.sql, which reads traces only.
-- users: cost pane, scorecard, fleetdeck query --name spend_by_route_daily
WITH bounds AS (
    SELECT
        coalesce($to::TIMESTAMP, (now() AT TIME ZONE 'UTC')::TIMESTAMP) AS window_end,
        coalesce($from::TIMESTAMP, window_end - INTERVAL 30 DAY) AS window_start,
        -- whole hours come from the rollup: [hours_start, hours_end); the partial hours at
        -- either end, [window_start, head_end) and [hours_end, window_end), from traces
        date_trunc('hour', window_start)
            + CASE WHEN date_trunc('hour', window_start) < window_start THEN INTERVAL 1 HOUR
                   ELSE INTERVAL 0 HOUR END AS hours_start,
        greatest(date_trunc('hour', window_end), hours_start) AS hours_end,
        least(hours_start, window_end) AS head_end
),

-- the partial hours at either end of the window, from traces (two ranges, so that each
-- scan skips the row groups outside its own range)
edge_traces AS (
    SELECT traces.*
    FROM traces
    CROSS JOIN bounds
    WHERE traces.ts_start >= bounds.window_start AND traces.ts_start < bounds.head_end
    UNION ALL
    SELECT traces.*
    FROM traces
    CROSS JOIN bounds
    WHERE traces.ts_start >= bounds.hours_end AND traces.ts_start < bounds.window_end
),

windowed AS (
    SELECT
        rollup_hourly.hour::DATE AS day,
        rollup_hourly.route,
        rollup_hourly.calls,
        rollup_hourly.cost_usd,
        rollup_hourly.input_tokens,
        rollup_hourly.output_tokens,
        rollup_hourly.cache_read_tokens,
        rollup_hourly.reasoning_tokens
    FROM rollup_hourly
    CROSS JOIN bounds
    WHERE rollup_hourly.hour >= bounds.hours_start AND rollup_hourly.hour < bounds.hours_end
      AND ($route::VARCHAR IS NULL OR rollup_hourly.route = $route::VARCHAR)
    UNION ALL
    SELECT
        traces.ts_start::DATE,
        traces.route,
        1,
        coalesce(traces.cost_usd, 0),
        coalesce(traces.input_tokens, 0),
        coalesce(traces.output_tokens, 0),
        coalesce(traces.cache_read_tokens, 0),
        coalesce(traces.reasoning_tokens, 0)
    FROM edge_traces AS traces
    WHERE ($route::VARCHAR IS NULL OR traces.route = $route::VARCHAR)
)

SELECT
    day,
    route,
    sum(calls)::BIGINT AS calls,
    sum(cost_usd)::DOUBLE AS cost_usd,
    sum(input_tokens)::BIGINT AS input_tokens,
    sum(output_tokens)::BIGINT AS output_tokens,
    sum(cache_read_tokens)::BIGINT AS cache_read_tokens,
    sum(reasoning_tokens)::BIGINT AS reasoning_tokens
FROM windowed
GROUP BY day, route
ORDER BY day, route NULLS LAST
