-- key_limits_usage: Each live virtual key's own rate limits and spend caps, with its requests and tokens over the last minute.
-- Keys of virtual_keys not revoked before `to`. requests: the key's traces with ts_start in
-- [`to` - 1 minute, `to`); tokens: their input plus output tokens (NULL counts as 0).
-- requests_per_minute, tokens_per_minute: the key's own limits (NULL: the policy's
-- per-key default, if any, applies); daily_cap, monthly_cap: its spend caps in USD (NULL: none).
-- param to: TIMESTAMP = now | end of the minute, exclusive (UTC)
-- users: overview pane, fleetdeck query --name key_limits_usage
WITH bounds AS (
    SELECT
        coalesce($to::TIMESTAMP, (now() AT TIME ZONE 'UTC')::TIMESTAMP) AS minute_end,
        minute_end - INTERVAL 1 MINUTE AS minute_start
),

recent AS (
    SELECT
        traces.key_id,
        count(*) AS requests,
        sum(coalesce(traces.input_tokens, 0) + coalesce(traces.output_tokens, 0)) AS tokens
    FROM traces
    CROSS JOIN bounds
    WHERE traces.ts_start >= bounds.minute_start
      AND traces.ts_start < bounds.minute_end
      AND traces.key_id IS NOT NULL
    GROUP BY traces.key_id
)

SELECT
    virtual_keys.key_id,
    virtual_keys.name,
    coalesce(recent.requests, 0) AS requests,
    coalesce(recent.tokens, 0) AS tokens,
    virtual_keys.requests_per_minute,
    virtual_keys.tokens_per_minute,
    virtual_keys.daily_cap,
    virtual_keys.monthly_cap
FROM virtual_keys
CROSS JOIN bounds
LEFT JOIN recent ON recent.key_id = virtual_keys.key_id
WHERE virtual_keys.revoked_at IS NULL OR virtual_keys.revoked_at >= bounds.minute_end
ORDER BY virtual_keys.name
