-- cache_hit_rate: Cache hits per route (exact and semantic), hit rate and an estimate of the money saved.
-- lookups: calls that went through the cache (cache is miss, exact or semantic; calls
-- blocked before the cache step have no cache value). hits: cache exact or semantic.
-- hit_rate = hits / lookups. saved_usd_estimate: each hit is worth the cost of the answer
-- it replayed (traces.cache_saved_usd) when the gateway recorded it, else the mean cost_usd
-- of the route's non-cached ok calls in the window (mean_miss_cost_usd); NULL when a hit
-- has neither, since there is then nothing to price it with.
-- param from: TIMESTAMP = `to` - 30 days | start of the window, inclusive (UTC)
-- param to: TIMESTAMP = now | end of the window, exclusive (UTC)
-- param route: VARCHAR = all | only this route
-- users: cost pane, scorecard, fleetdeck query --name cache_hit_rate
WITH bounds AS (
    SELECT
        coalesce($to::TIMESTAMP, (now() AT TIME ZONE 'UTC')::TIMESTAMP) AS window_end,
        coalesce($from::TIMESTAMP, window_end - INTERVAL 30 DAY) AS window_start
),

windowed AS (
    SELECT
        traces.route, traces.status, traces.cache, traces.cache_similarity, traces.cost_usd, traces.cache_saved_usd
    FROM traces
    CROSS JOIN bounds
    WHERE traces.ts_start >= bounds.window_start
      AND traces.ts_start < bounds.window_end
      AND ($route::VARCHAR IS NULL OR traces.route = $route::VARCHAR)
),

per_route AS (
    SELECT
        route,
        count(*) AS calls,
        count(cache) AS lookups,
        count(*) FILTER (WHERE cache = 'exact') AS exact_hits,
        count(*) FILTER (WHERE cache = 'semantic') AS semantic_hits,
        avg(cache_similarity) FILTER (WHERE cache = 'semantic') AS mean_semantic_similarity,
        avg(cost_usd) FILTER (
            WHERE status = 'ok' AND coalesce(cache, 'miss') = 'miss'
        ) AS mean_miss_cost_usd,
        sum(cache_saved_usd) FILTER (WHERE cache IN ('exact', 'semantic')) AS recorded_saved_usd,
        count(*) FILTER (WHERE cache IN ('exact', 'semantic') AND cache_saved_usd IS NULL) AS unrecorded_hits
    FROM windowed
    GROUP BY route
)

SELECT
    route,
    calls,
    lookups,
    exact_hits,
    semantic_hits,
    exact_hits + semantic_hits AS hits,
    hits / nullif(lookups, 0) AS hit_rate,
    mean_semantic_similarity,
    mean_miss_cost_usd,
    CASE
        WHEN unrecorded_hits > 0 THEN unrecorded_hits * mean_miss_cost_usd + coalesce(recorded_saved_usd, 0)
        ELSE coalesce(recorded_saved_usd, hits * mean_miss_cost_usd)
    END AS saved_usd_estimate
FROM per_route
ORDER BY route NULLS LAST
