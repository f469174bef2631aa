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
-- Reads rollup_hourly and the latency histograms of rollup_latency_hourly for the
-- window's whole hours, traces for the partial hours at either end. Counts (calls,
-- streamed_calls, over_slo) equal queries/naive/latency_slo.sql's exactly: over_slo is a
-- sum of whole buckets when slo_ms has two significant digits (250, 1500, 2000), else
-- the calls of the one bucket holding slo_ms are counted in traces. Percentiles are read
-- from the merged buckets (two significant digits, see the latency_bucket macro): the
-- value at a rank is interpolated between its bucket's least and greatest value, exact
-- when that bucket holds at most two calls or the rank is its first or last, and never
-- further from the naive quantile_cont than its bucket's width (at most 10 % of it).
-- users: traffic pane, fleet pane, scorecard, fleetdeck query --name latency_slo
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
        least(hours_start, window_end) AS head_end,
        coalesce($slo_ms::DOUBLE, 2000) AS slo_ms
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

served AS (
    SELECT rollup_hourly.route, rollup_hourly.calls
    FROM rollup_hourly
    CROSS JOIN bounds
    WHERE rollup_hourly.hour >= bounds.hours_start AND rollup_hourly.hour < bounds.hours_end
      AND rollup_hourly.status IN ('ok', 'partial', 'error')
      AND ($route::VARCHAR IS NULL OR rollup_hourly.route = $route::VARCHAR)
    UNION ALL
    SELECT traces.route, 1
    FROM edge_traces AS traces
    WHERE traces.status IN ('ok', 'partial', 'error')
      AND ($route::VARCHAR IS NULL OR traces.route = $route::VARCHAR)
),

per_route AS (
    SELECT route, sum(calls)::BIGINT AS calls FROM served GROUP BY route
),

histogram AS (
    SELECT
        rollup_latency_hourly.route,
        rollup_latency_hourly.metric,
        rollup_latency_hourly.bucket,
        rollup_latency_hourly.calls,
        rollup_latency_hourly.lowest,
        rollup_latency_hourly.highest
    FROM rollup_latency_hourly
    CROSS JOIN bounds
    WHERE rollup_latency_hourly.hour >= bounds.hours_start AND rollup_latency_hourly.hour < bounds.hours_end
      AND ($route::VARCHAR IS NULL OR rollup_latency_hourly.route = $route::VARCHAR)
    UNION ALL
    SELECT traces.route, edge.metric, latency_bucket(edge.value), 1, edge.value, edge.value
    FROM edge_traces AS traces
    CROSS JOIN LATERAL (VALUES ('latency_ms', traces.latency_ms), ('ttft_ms', traces.ttft_ms)) AS edge (metric, value)
    WHERE traces.status IN ('ok', 'partial', 'error')
      AND ($route::VARCHAR IS NULL OR traces.route = $route::VARCHAR)
      AND edge.value IS NOT NULL
),

buckets AS (
    SELECT
        route,
        metric,
        bucket,
        sum(calls) AS calls,
        min(lowest) AS lowest,
        max(highest) AS highest,
        sum(sum(calls)) OVER (PARTITION BY route, metric ORDER BY bucket) - sum(calls) AS below,
        sum(sum(calls)) OVER (PARTITION BY route, metric) AS total
    FROM histogram
    GROUP BY route, metric, bucket
),

-- quantile_cont: the value at rank (total - 1) * q (0-based), interpolated between the
-- ranks either side of it
ranks AS (
    SELECT route, metric, q, h, floor(h) AS r0, ceil(h) AS r1
    FROM (
        SELECT DISTINCT route, metric, (total - 1)::DOUBLE * q AS h, q
        FROM buckets
        CROSS JOIN (VALUES (0.50), (0.95), (0.99)) AS quantiles (q)
    )
),

rank_values AS (
    SELECT
        ranks.route,
        ranks.metric,
        ranks.q,
        ranks.h,
        ranks.r0,
        rank.r,
        CASE
            WHEN buckets.calls = 1 THEN buckets.lowest
            ELSE buckets.lowest
                + (buckets.highest - buckets.lowest) * (rank.r - buckets.below) / (buckets.calls - 1)
        END AS value
    FROM ranks
    CROSS JOIN LATERAL (VALUES (ranks.r0), (ranks.r1)) AS rank (r)
    JOIN buckets
        ON buckets.route IS NOT DISTINCT FROM ranks.route
       AND buckets.metric = ranks.metric
       AND rank.r >= buckets.below
       AND rank.r < buckets.below + buckets.calls
),

quantiles AS (
    SELECT
        route,
        metric,
        q,
        arg_min(value, r) + (h - r0) * (arg_max(value, r) - arg_min(value, r)) AS value
    FROM rank_values
    GROUP BY route, metric, q, h, r0
),

slo_bucket AS (
    SELECT buckets.*, bounds.slo_ms
    FROM buckets
    CROSS JOIN bounds
    WHERE buckets.metric = 'latency_ms' AND buckets.bucket = latency_bucket(bounds.slo_ms)
),

-- the routes whose bucket holding slo_ms has calls either side of it: counted in traces
split_slo AS (
    SELECT route FROM slo_bucket WHERE lowest <= slo_ms AND highest > slo_ms
),

-- the window, when some route has such a bucket: else no row, and traces is not read
split_window AS (
    SELECT bounds.* FROM bounds WHERE EXISTS (SELECT 1 FROM split_slo)
),

split_over_slo AS (
    SELECT traces.route, count(*) AS n
    FROM traces
    JOIN split_window AS bounds
        ON traces.ts_start >= bounds.window_start
       AND traces.ts_start < bounds.window_end
    WHERE traces.status IN ('ok', 'partial', 'error')
      AND traces.latency_ms > bounds.slo_ms
      AND traces.latency_ms <= latency_bucket(bounds.slo_ms)
      AND EXISTS (SELECT 1 FROM split_slo WHERE split_slo.route IS NOT DISTINCT FROM traces.route)
    GROUP BY traces.route
),

over_slo AS (
    SELECT buckets.route, sum(buckets.calls) AS n
    FROM buckets
    CROSS JOIN bounds
    WHERE buckets.metric = 'latency_ms'
      AND (buckets.bucket > latency_bucket(bounds.slo_ms)
           OR (buckets.bucket = latency_bucket(bounds.slo_ms) AND buckets.lowest > bounds.slo_ms))
    GROUP BY buckets.route
    UNION ALL
    SELECT route, n FROM split_over_slo
),

per_metric AS (
    SELECT
        route,
        any_value(total) FILTER (WHERE metric = 'latency_ms') AS latency_calls,
        any_value(total) FILTER (WHERE metric = 'ttft_ms') AS streamed_calls
    FROM buckets
    GROUP BY route
),

pivoted AS (
    SELECT
        route,
        any_value(value) FILTER (WHERE metric = 'latency_ms' AND q = 0.50) AS latency_p50_ms,
        any_value(value) FILTER (WHERE metric = 'latency_ms' AND q = 0.95) AS latency_p95_ms,
        any_value(value) FILTER (WHERE metric = 'latency_ms' AND q = 0.99) AS latency_p99_ms,
        any_value(value) FILTER (WHERE metric = 'ttft_ms' AND q = 0.50) AS ttft_p50_ms,
        any_value(value) FILTER (WHERE metric = 'ttft_ms' AND q = 0.95) AS ttft_p95_ms,
        any_value(value) FILTER (WHERE metric = 'ttft_ms' AND q = 0.99) AS ttft_p99_ms
    FROM quantiles
    GROUP BY route
),

over_per_route AS (
    SELECT route, sum(n)::BIGINT AS over_slo FROM over_slo GROUP BY route
)

SELECT
    per_route.route,
    per_route.calls,
    pivoted.latency_p50_ms,
    pivoted.latency_p95_ms,
    pivoted.latency_p99_ms,
    coalesce(per_metric.streamed_calls, 0)::BIGINT AS streamed_calls,
    pivoted.ttft_p50_ms,
    pivoted.ttft_p95_ms,
    pivoted.ttft_p99_ms,
    bounds.slo_ms,
    coalesce(over_per_route.over_slo, 0)::BIGINT AS over_slo,
    coalesce(over_per_route.over_slo, 0) / nullif(per_metric.latency_calls, 0) AS over_slo_share
FROM per_route
CROSS JOIN bounds
LEFT JOIN pivoted ON pivoted.route IS NOT DISTINCT FROM per_route.route
LEFT JOIN per_metric ON per_metric.route IS NOT DISTINCT FROM per_route.route
LEFT JOIN over_per_route ON over_per_route.route IS NOT DISTINCT FROM per_route.route
ORDER BY per_route.route NULLS LAST
