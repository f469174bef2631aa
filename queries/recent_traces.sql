-- recent_traces: The latest traces, newest first, for the live request stream, with optional filters.
-- Ordered by ts_start, then request_id, both descending; `limit` caps the rows. status,
-- workflow, route, provider and key_id match exactly; model matches the model that
-- answered (response_model), else the one asked for (request_model); text is a
-- case-insensitive substring of workflow, route, model, reason code or error type.
-- model: response_model, else request_model. operation: chat, embeddings, outcome, …
-- param limit: INTEGER = 500 | at most this many traces
-- param status: VARCHAR = all | only this status (ok, partial, error, blocked, over_budget, cached)
-- param workflow: VARCHAR = all | only this workflow_id
-- param route: VARCHAR = all | only this route
-- param model: VARCHAR = all | only this model (provider/model)
-- param provider: VARCHAR = all | only this provider
-- param key_id: VARCHAR = all | only this virtual key
-- param session_id: VARCHAR = all | only this session
-- param text: VARCHAR = all | only traces whose workflow, route, model, reason or error contains this
-- param since: TIMESTAMP = all | only traces that started at or after this (UTC)
-- users: traffic pane, fleetdeck query --name recent_traces
SELECT
    request_id,
    ts_start,
    workflow_id,
    operation,
    route,
    coalesce(response_model, request_model) AS model,
    provider,
    reason_code,
    status,
    error_type,
    latency_ms,
    input_tokens,
    output_tokens,
    cost_usd,
    cache,
    attempts,
    key_id
FROM traces
WHERE ($status::VARCHAR IS NULL OR status = $status::VARCHAR)
  AND ($workflow::VARCHAR IS NULL OR workflow_id = $workflow::VARCHAR)
  AND ($route::VARCHAR IS NULL OR route = $route::VARCHAR)
  AND ($model::VARCHAR IS NULL OR coalesce(response_model, request_model) = $model::VARCHAR)
  AND ($provider::VARCHAR IS NULL OR provider = $provider::VARCHAR)
  AND ($key_id::VARCHAR IS NULL OR key_id = $key_id::VARCHAR)
  AND ($session_id::VARCHAR IS NULL OR session_id = $session_id::VARCHAR)
  AND ($since::TIMESTAMP IS NULL OR ts_start >= $since::TIMESTAMP)
  AND (
      $text::VARCHAR IS NULL
      OR concat_ws(' ', workflow_id, route, response_model, request_model, reason_code, error_type)
      ILIKE '%' || $text::VARCHAR || '%'
  )
ORDER BY ts_start DESC, request_id DESC
LIMIT coalesce($limit::INTEGER, 500)
