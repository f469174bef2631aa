-- spend_to_date: Settled spend of the current UTC day and month per key, route and workflow.
-- What the budget ledger starts from: one row per (scope, period), scope being
-- 'key:<key_id>', 'route:<route>' or 'workflow:<workflow_id>', period 'day' or 'month',
-- period_key the day ('2026-11-30') or month ('2026-11') it covers. Every trace with a
-- cost counts (retries, fallbacks and judge calls included); NULL costs count as 0.
-- param as_of: TIMESTAMP = now | the moment whose day and month are summed (UTC)
-- users: gateway budget ledger, keys list, fleet pane, fleetdeck query --name spend_to_date
WITH bounds AS (
    SELECT
        coalesce($as_of::TIMESTAMP, (now() AT TIME ZONE 'UTC')::TIMESTAMP) AS as_of,
        date_trunc('day', as_of) AS day_start,
        date_trunc('month', as_of) AS month_start
),

month_calls AS (
    SELECT
        traces.key_id,
        traces.route,
        traces.workflow_id,
        coalesce(traces.cost_usd, 0) AS cost_usd,
        traces.ts_start >= bounds.day_start AS today
    FROM traces
    CROSS JOIN bounds
    WHERE traces.ts_start >= bounds.month_start
      AND traces.ts_start <= bounds.as_of
      AND traces.cost_usd IS NOT NULL
),

scoped AS (
    SELECT 'key:' || key_id AS scope, cost_usd, today FROM month_calls WHERE key_id IS NOT NULL
    UNION ALL
    SELECT 'route:' || route, cost_usd, today FROM month_calls WHERE route IS NOT NULL
    UNION ALL
    SELECT 'workflow:' || workflow_id, cost_usd, today FROM month_calls WHERE workflow_id IS NOT NULL
)

SELECT
    scope,
    'day' AS period,
    strftime(bounds.as_of, '%Y-%m-%d') AS period_key,
    sum(cost_usd) AS spend_usd
FROM scoped
CROSS JOIN bounds
WHERE today
GROUP BY scope, bounds.as_of
UNION ALL
SELECT
    scope,
    'month' AS period,
    strftime(bounds.as_of, '%Y-%m') AS period_key,
    sum(cost_usd) AS spend_usd
FROM scoped
CROSS JOIN bounds
GROUP BY scope, bounds.as_of
ORDER BY scope, period
