-- provider_minutes: Per provider and minute of a window: calls, output tokens per second, calls in flight.
-- Calls sent to a provider only (provider not NULL); minutes are UTC minutes of ts_start;
-- a minute without a call of the provider has no row. tokens_per_second: output tokens of
-- the ok and partial calls that started in the minute, over its 60 seconds. in_flight: the
-- summed latency of the minute's calls over 60 seconds, i.e. the mean number of that
-- provider's calls under way (Little's law; a queue that builds up shows as a rise).
-- param from: TIMESTAMP = `to` - 1 hour | start of the window, inclusive (UTC)
-- param to: TIMESTAMP = now | end of the window, exclusive (UTC)
-- users: fleet pane (charts), fleetdeck query --name provider_minutes
WITH bounds AS (
    SELECT
        coalesce($to::TIMESTAMP, (now() AT TIME ZONE 'UTC')::TIMESTAMP) AS window_end,
        coalesce($from::TIMESTAMP, window_end - INTERVAL 1 HOUR) AS window_start
)

SELECT
    traces.provider,
    date_trunc('minute', traces.ts_start) AS minute,
    count(*) AS calls,
    coalesce(sum(traces.output_tokens) FILTER (WHERE traces.status IN ('ok', 'partial')), 0) / 60.0
        AS tokens_per_second,
    coalesce(sum(traces.latency_ms), 0) / 60000.0 AS in_flight
FROM traces
CROSS JOIN bounds
WHERE traces.ts_start >= bounds.window_start
  AND traces.ts_start < bounds.window_end
  AND traces.provider IS NOT NULL
GROUP BY ALL
ORDER BY traces.provider, minute
