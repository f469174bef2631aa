-- session_timeline: Every call of one session in order, with its running cost.
-- param session_id: VARCHAR = none | the session
-- users: trace view (session), fleetdeck query --name session_timeline
SELECT
    request_id,
    ts_start,
    protocol,
    operation,
    route,
    coalesce(response_model, request_model) AS model,
    status,
    latency_ms,
    input_tokens,
    output_tokens,
    cost_usd,
    sum(coalesce(cost_usd, 0)) OVER (ORDER BY ts_start, request_id) AS running_cost_usd
FROM traces
WHERE session_id = $session_id::VARCHAR
ORDER BY ts_start, request_id
