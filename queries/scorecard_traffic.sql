-- scorecard_traffic: Per workflow and overall: calls, spend, errors, over-budget refusals, cache hits and money saved, p95 latency.
-- Window: traces whose ts_start lies in [from, to); workflow: traces.workflow_id (judge
-- calls form the workflow 'fleetdeck-judge'). One row per workflow (scope 'workflow') and
-- one overall row (scope 'overall', workflow_id NULL) over the selected workflows.
-- spend_usd: sum of cost_usd, NULL as 0. attempted: status ok, partial or error (sent to a
-- model); errors: status error or partial; error_rate = errors / attempted (NULL if none).
-- over_budget: status over_budget; blocked: status blocked.
-- cache_lookups: calls with a cache value (miss, exact, semantic); cache_hits: exact or
-- semantic; cache_hit_rate = cache_hits / cache_lookups. cache_saved_usd: each hit is worth
-- the cost of the answer it replayed (traces.cache_saved_usd) when the gateway recorded it,
-- else the mean cost_usd of its route's ok cache-miss calls in the window over ALL workflows
-- (as in cache_hit_rate); hits on a route with neither are worth 0.
-- latency_p95_ms: continuous 95th percentile of latency_ms over the attempted calls.
-- param from: TIMESTAMP = `to` - 30 days | start of the window, inclusive (UTC)
-- param to: TIMESTAMP = now | end of the window, exclusive (UTC)
-- param workflows: VARCHAR = all | only these workflow_ids, comma-separated
-- users: scorecard, fleetdeck query --name scorecard_traffic
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
),

miss_cost AS (
    SELECT route, avg(cost_usd) AS mean_miss_cost_usd
    FROM windowed
    WHERE status = 'ok' AND coalesce(cache, 'miss') = 'miss'
    GROUP BY route
),

selected AS (
    SELECT
        windowed.workflow_id,
        windowed.status,
        windowed.cache,
        windowed.latency_ms,
        coalesce(windowed.cost_usd, 0) AS cost_usd,
        windowed.status IN ('ok', 'partial', 'error') AS is_attempted,
        windowed.cache IN ('exact', 'semantic') AS is_hit,
        CASE
            WHEN windowed.cache IN ('exact', 'semantic')
                THEN coalesce(windowed.cache_saved_usd, miss_cost.mean_miss_cost_usd, 0)
        END AS saved_usd
    FROM windowed
    LEFT JOIN miss_cost ON miss_cost.route IS NOT DISTINCT FROM windowed.route
    WHERE $workflows::VARCHAR IS NULL
       OR list_contains(string_split($workflows::VARCHAR, ','), windowed.workflow_id)
)

SELECT
    CASE WHEN grouping(workflow_id) = 0 THEN 'workflow' ELSE 'overall' END AS scope,
    workflow_id,
    count(*) AS calls,
    sum(cost_usd) AS spend_usd,
    count(*) FILTER (WHERE is_attempted) AS attempted,
    count(*) FILTER (WHERE status IN ('error', 'partial')) AS errors,
    errors / nullif(attempted, 0) AS error_rate,
    count(*) FILTER (WHERE status = 'over_budget') AS over_budget,
    count(*) FILTER (WHERE status = 'blocked') AS blocked,
    count(cache) AS cache_lookups,
    count(*) FILTER (WHERE is_hit) AS cache_hits,
    cache_hits / nullif(cache_lookups, 0) AS cache_hit_rate,
    coalesce(sum(saved_usd), 0) AS cache_saved_usd,
    quantile_cont(latency_ms, 0.95) FILTER (WHERE is_attempted) AS latency_p95_ms
FROM selected
GROUP BY GROUPING SETS ((workflow_id), ())
HAVING count(*) > 0
ORDER BY scope DESC, workflow_id NULLS LAST
