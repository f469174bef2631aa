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
-- users: traffic pane, fleet pane, scorecard, fleetdeck query --name error_rate
WITH bounds AS (
    SELECT
        coalesce($to::TIMESTAMP, (now() AT TIME ZONE 'UTC')::TIMESTAMP) AS window_end,
        coalesce($from::TIMESTAMP, window_end - INTERVAL 30 DAY) AS window_start
),

windowed AS (
    SELECT
        traces.route,
        traces.provider,
        traces.status,
        traces.error_type,
        traces.status IN ('error', 'partial') AS is_error
    FROM traces
    CROSS JOIN bounds
    WHERE traces.ts_start >= bounds.window_start
      AND traces.ts_start < bounds.window_end
      AND ($route::VARCHAR IS NULL OR traces.route = $route::VARCHAR)
),

error_types AS (
    SELECT route, provider, error_type, count(*) AS n
    FROM windowed
    WHERE is_error AND error_type IS NOT NULL
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
        count(*) AS calls,
        count(*) FILTER (WHERE status IN ('ok', 'partial', 'error')) AS attempted,
        count(*) FILTER (WHERE is_error) AS errors,
        count(*) FILTER (WHERE status = 'partial') AS partial,
        count(*) FILTER (WHERE status = 'blocked') AS blocked,
        count(*) FILTER (WHERE status = 'over_budget') AS over_budget,
        count(*) FILTER (WHERE status = 'cached') AS cached
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
