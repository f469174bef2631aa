-- fleet_models: Per provider and model over the last minutes: calls, requests per second, latency, errors, decode speed.
-- Calls sent to a provider only (provider not NULL). model: response_model, else the model
-- of the last attempt (attempt_log), else request_model. rps = calls / window seconds.
-- errors: status error or partial; error_rate = errors / calls. Latency percentiles are
-- continuous, over calls with a latency. tokens_per_second: output tokens of the ok calls
-- divided by their summed latency (a lower bound of the decode speed: it includes prefill).
-- param to: TIMESTAMP = now | end of the window, exclusive (UTC)
-- param minutes: DOUBLE = 60 | length of the window in minutes
-- users: fleet pane, fleetdeck query --name fleet_models
WITH bounds AS (
    SELECT
        coalesce($to::TIMESTAMP, (now() AT TIME ZONE 'UTC')::TIMESTAMP) AS window_end,
        greatest(coalesce($minutes::DOUBLE, 60), 1 / 60) AS minutes,
        window_end - to_microseconds((minutes * 60000000)::BIGINT) AS window_start
),

windowed AS (
    SELECT
        traces.provider,
        coalesce(
            traces.response_model,
            json_extract_string(traces.attempt_log, '$[#-1].model'),
            traces.request_model
        ) AS model,
        traces.status,
        traces.latency_ms,
        traces.output_tokens,
        bounds.minutes
    FROM traces
    CROSS JOIN bounds
    WHERE traces.ts_start >= bounds.window_start
      AND traces.ts_start < bounds.window_end
      AND traces.provider IS NOT NULL
)

SELECT
    provider,
    model,
    count(*) AS calls,
    count(*) / (any_value(minutes) * 60) AS rps,
    quantile_cont(latency_ms, 0.50) AS latency_p50_ms,
    quantile_cont(latency_ms, 0.99) AS latency_p99_ms,
    count(*) FILTER (WHERE status IN ('error', 'partial')) AS errors,
    errors / count(*) AS error_rate,
    sum(output_tokens) FILTER (WHERE status = 'ok')
        / nullif(sum(latency_ms) FILTER (WHERE status = 'ok' AND output_tokens IS NOT NULL), 0)
        * 1000 AS tokens_per_second
FROM windowed
GROUP BY provider, model
ORDER BY provider, model NULLS LAST
