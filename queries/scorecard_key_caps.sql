-- scorecard_key_caps: Virtual keys with a spend cap, and their spend in the window, for spend against budget.
-- Keys of virtual_keys with a daily_cap or a monthly_cap. active_days: the UTC calendar days
-- of [from, to) on which the key existed (from created_at, until revoked_at), each day whole
-- (a daily cap allows its full amount on the day a key is created). active_months: the UTC
-- calendar months touched by that span. spend_usd: sum of cost_usd of the key's calls in the
-- window. budget_usd: the least of daily_cap x active_days and monthly_cap x active_months
-- (a cap that is not set does not bound it).
-- param from: TIMESTAMP = `to` - 30 days | start of the window, inclusive (UTC)
-- param to: TIMESTAMP = now | end of the window, exclusive (UTC)
-- users: scorecard, keys list, fleetdeck query --name scorecard_key_caps
WITH bounds AS (
    SELECT
        coalesce($to::TIMESTAMP, (now() AT TIME ZONE 'UTC')::TIMESTAMP) AS window_end,
        coalesce($from::TIMESTAMP, window_end - INTERVAL 30 DAY) AS window_start
),

spans AS (
    SELECT
        virtual_keys.*,
        greatest(bounds.window_start, virtual_keys.created_at) AS active_from,
        least(bounds.window_end, coalesce(virtual_keys.revoked_at, bounds.window_end)) AS active_to
    FROM virtual_keys
    CROSS JOIN bounds
    WHERE virtual_keys.daily_cap IS NOT NULL OR virtual_keys.monthly_cap IS NOT NULL
),

spend AS (
    SELECT traces.key_id, coalesce(sum(traces.cost_usd), 0) AS spend_usd
    FROM traces
    CROSS JOIN bounds
    WHERE traces.ts_start >= bounds.window_start
      AND traces.ts_start < bounds.window_end
    GROUP BY traces.key_id
),

sized AS (
    SELECT
        spans.*,
        CASE
            WHEN spans.active_to <= spans.active_from THEN 0
            ELSE date_diff('day', spans.active_from::DATE, (spans.active_to - INTERVAL 1 MICROSECOND)::DATE) + 1
        END AS active_days,
        CASE
            WHEN spans.active_to <= spans.active_from THEN 0
            ELSE date_diff(
                'month', date_trunc('month', spans.active_from),
                date_trunc('month', spans.active_to - INTERVAL 1 MICROSECOND)
            ) + 1
        END AS active_months
    FROM spans
)

SELECT
    sized.key_id,
    sized.name,
    sized.environment,
    sized.daily_cap,
    sized.monthly_cap,
    sized.created_at,
    sized.revoked_at,
    sized.active_days,
    sized.active_months,
    coalesce(spend.spend_usd, 0) AS spend_usd,
    least(
        coalesce(sized.daily_cap * sized.active_days, 'infinity'::DOUBLE),
        coalesce(sized.monthly_cap * sized.active_months, 'infinity'::DOUBLE)
    ) AS budget_usd
FROM sized
LEFT JOIN spend USING (key_id)
ORDER BY sized.name
