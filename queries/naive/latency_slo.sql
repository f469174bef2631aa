-- latency_slo: Latency percentiles per route (total and time to first token) against an SLO.
-- Calls sent to a model only (status ok, partial or error; errors keep their latency,
-- a timeout is slow too); cache-served, blocked and over-budget calls are left out.
-- Percentiles are continuous (interpolated); ttft_ms exists for streamed calls only, so
-- its percentiles cover those. over_slo_share: share of the calls with a latency whose
-- latency_ms is above slo_ms.
-- param from: TIMESTAMP = `to` - 30 days | start of the window, inclusive (UTC)
-- param to: TIMESTAMP = now | end of the window, exclusive (UTC)
-- param route: VARCHAR = all | only this route
-- param slo_ms: DOUBLE = 2000 | latency objective in milliseconds
-- users: traffic pane, fleet pane, scorecard, fleetdeck query --name latency_slo
WITH bounds AS (
    SELECT
        coalesce($to::TIMESTAMP, (now() AT TIME ZONE 'UTC')::TIMESTAMP) AS window_end,
        coalesce($from::TIMESTAMP, window_end - INTERVAL 30 DAY) AS window_start,
        coalesce($slo_ms::DOUBLE, 2000) AS slo_ms
),

served AS (
    SELECT traces.route, traces.latency_ms, traces.ttft_ms, bounds.slo_ms
    FROM traces
    CROSS JOIN bounds
    WHERE traces.ts_start >= bounds.window_start
      AND traces.ts_start < bounds.window_end
      AND traces.status IN ('ok', 'partial', 'error')
      AND ($route::VARCHAR IS NULL OR traces.route = $route::VARCHAR)
)

SELECT
    route,
    count(*) AS calls,
    quantile_cont(latency_ms, 0.50) AS latency_p50_ms,
    quantile_cont(latency_ms, 0.95) AS latency_p95_ms,
    quantile_cont(latency_ms, 0.99) AS latency_p99_ms,
    count(ttft_ms) AS streamed_calls,
    quantile_cont(ttft_ms, 0.50) AS ttft_p50_ms,
    quantile_cont(ttft_ms, 0.95) AS ttft_p95_ms,
    quantile_cont(ttft_ms, 0.99) AS ttft_p99_ms,
    any_value(slo_ms) AS slo_ms,
    count(*) FILTER (WHERE latency_ms > slo_ms) AS over_slo,
    count(*) FILTER (WHERE latency_ms > slo_ms) / nullif(count(latency_ms), 0) AS over_slo_share
FROM served
GROUP BY route
ORDER BY route NULLS LAST
