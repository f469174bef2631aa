-- error_rate: Errors per route and provider: error rate, blocked and over-budget counts.
-- calls: every trace of the group. attempted: calls sent to a provider (status ok,
-- partial or error). errors: status error or partial (a stream cut after its first byte
-- is an error to the user). error_rate = errors / attempted, NULL when nothing was
-- attempted: blocked, over-budget and cache-served calls never reached the provider and
-- would dilute its rate, so they are counted apart. Blocked and over-budget calls usually
-- have no provider: they form the provider NULL row of their route.
-- top_error_type: the most frequent error_type among the errors (ties: the first alphabetically).
-- param from: TIMESTAMP = `to` - 30 days | start of the window, inclusive (UTC)
-- param to: TIMESTAMP = now | end of the window, exclusive (UTC)
-- param route: VARCHAR = all | only this route
-- Reads rollup_hourly for the window's whole hours and traces for the partial hours at
-- either end; equal to queries/naive/error_rate.sql, which reads traces only.
-- users: traffic pane, fleet pane, scorecard, fleetdeck query --name error_rate
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
        rollup_hourly.route,
        rollup_hourly.provider,
        rollup_hourly.status,
        rollup_hourly.error_type,
        rollup_hourly.calls
    FROM rollup_hourly
    CROSS JOIN bounds
    WHERE rollup_hourly.hour >= bounds.hours_start AND rollup_hourly.hour < bounds.hours_end
      AND ($route::VARCHAR IS NULL OR rollup_hourly.route = $route::VARCHAR)
    UNION ALL
    SELECT traces.route, traces.provider, traces.status, traces.error_type, 1
    FROM edge_traces AS traces
    WHERE ($route::VARCHAR IS NULL OR traces.route = $route::VARCHAR)
),

error_types AS (
    SELECT route, provider, error_type, sum(calls) AS n
    FROM windowed
    WHERE status IN ('error', 'partial') AND error_type IS NOT NULL
    GROUP BY ALL
),

top_error_types AS (
    SELECT route, provider, arg_min(error_type, (-n, error_type)) AS top_error_type
    FROM error_types
    GROUP BY ALL
),

per_route AS (
    SELECT
        route,
        provider,
        sum(calls)::BIGINT AS calls,
        coalesce(sum(calls) FILTER (WHERE status IN ('ok', 'partial', 'error')), 0)::BIGINT AS attempted,
        coalesce(sum(calls) FILTER (WHERE status IN ('error', 'partial')), 0)::BIGINT AS errors,
        coalesce(sum(calls) FILTER (WHERE status = 'partial'), 0)::BIGINT AS partial,
        coalesce(sum(calls) FILTER (WHERE status = 'blocked'), 0)::BIGINT AS blocked,
        coalesce(sum(calls) FILTER (WHERE status = 'over_budget'), 0)::BIGINT AS over_budget,
        coalesce(sum(calls) FILTER (WHERE status = 'cached'), 0)::BIGINT AS cached
    FROM windowed
    GROUP BY route, provider
)

SELECT
    per_route.route,
    per_route.provider,
    calls,
    attempted,
    errors,
    errors / nullif(attempted, 0) AS error_rate,
    partial,
    blocked,
    over_budget,
    cached,
    top_error_types.top_error_type
FROM per_route
LEFT JOIN top_error_types
    ON per_route.route IS NOT DISTINCT FROM top_error_types.route
   AND per_route.provider IS NOT DISTINCT FROM top_error_types.provider
ORDER BY per_route.route NULLS LAST, per_route.provider NULLS LAST
