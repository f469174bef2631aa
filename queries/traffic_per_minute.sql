-- traffic_per_minute: Calls, errors and latency percentiles per minute of a window, for the Traffic pane's charts.
-- Minutes are UTC minutes of ts_start (date_trunc); minutes without a call have no row.
-- calls: every trace; errors: status error or partial; latency percentiles (continuous)
-- over the calls sent to a model (status ok, partial or error), as latency_slo counts them.
-- The filters match as recent_traces' do: status, workflow, route, provider and key_id
-- exactly, model the answering model (response_model, else request_model), text a
-- case-insensitive substring of workflow, route, model, reason code or error type.
-- param from: TIMESTAMP = `to` - 1 hour | start of the window, inclusive (UTC)
-- param to: TIMESTAMP = now | end of the window, exclusive (UTC)
-- param status: VARCHAR = all | only this status (ok, partial, error, blocked, over_budget, cached)
-- param workflow: VARCHAR = all | only this workflow_id
-- param route: VARCHAR = all | only this route
-- param model: VARCHAR = all | only this model (provider/model)
-- param provider: VARCHAR = all | only this provider
-- param key_id: VARCHAR = all | only this virtual key
-- param session_id: VARCHAR = all | only this session
-- param text: VARCHAR = all | only traces whose workflow, route, model, reason or error contains this
-- users: traffic pane (charts), fleetdeck query --name traffic_per_minute
WITH bounds AS (
    SELECT
        coalesce($to::TIMESTAMP, (now() AT TIME ZONE 'UTC')::TIMESTAMP) AS window_end,
        coalesce($from::TIMESTAMP, window_end - INTERVAL 1 HOUR) AS window_start
),

windowed AS (
    SELECT
        date_trunc('minute', traces.ts_start) AS minute,
        traces.status,
        traces.latency_ms
    FROM traces
    CROSS JOIN bounds
    WHERE traces.ts_start >= bounds.window_start
      AND traces.ts_start < bounds.window_end
      AND ($status::VARCHAR IS NULL OR traces.status = $status::VARCHAR)
      AND ($workflow::VARCHAR IS NULL OR traces.workflow_id = $workflow::VARCHAR)
      AND ($route::VARCHAR IS NULL OR traces.route = $route::VARCHAR)
      AND ($model::VARCHAR IS NULL OR coalesce(traces.response_model, traces.request_model) = $model::VARCHAR)
      AND ($provider::VARCHAR IS NULL OR traces.provider = $provider::VARCHAR)
      AND ($key_id::VARCHAR IS NULL OR traces.key_id = $key_id::VARCHAR)
      AND ($session_id::VARCHAR IS NULL OR traces.session_id = $session_id::VARCHAR)
      AND (
          $text::VARCHAR IS NULL
          OR concat_ws(
              ' ',
              traces.workflow_id,
              traces.route,
              traces.response_model,
              traces.request_model,
              traces.reason_code,
              traces.error_type
          ) ILIKE '%' || $text::VARCHAR || '%'
      )
)

SELECT
    minute,
    count(*) AS calls,
    count(*) FILTER (WHERE status IN ('error', 'partial')) AS errors,
    quantile_cont(latency_ms, 0.50) FILTER (WHERE status IN ('ok', 'partial', 'error')) AS latency_p50_ms,
    quantile_cont(latency_ms, 0.95) FILTER (WHERE status IN ('ok', 'partial', 'error')) AS latency_p95_ms
FROM windowed
GROUP BY minute
ORDER BY minute
