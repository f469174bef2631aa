-- routing_share: Share of routed calls per tier and model, per workflow and over all workflows.
-- Routed calls are those sent to a model: status ok, partial or error. Blocked,
-- over-budget and cache-served calls reached no model and are left out.
-- One row per (scope, workflow_id, tier, provider, model); scope 'workflow' rows give the
-- split inside one workflow, scope 'overall' rows (workflow_id NULL) the split over all.
-- model: response_model; for a call that got no response, the model of its last attempt
-- (attempt_log), else request_model unless that names a route ('route:<intent>').
-- small_or_local: tier 'small' or 'local', or provider 'local'.
-- share: calls / routed calls of the scope's workflow (or of all);
-- small_or_local_share: the share of that workflow (or of all) on small or local models,
-- repeated on each of its rows.
-- param from: TIMESTAMP = `to` - 30 days | start of the window, inclusive (UTC)
-- param to: TIMESTAMP = now | end of the window, exclusive (UTC)
-- param workflow: VARCHAR = all | only this workflow_id (the overall rows then cover only it)
-- users: fleet pane, scorecard, routing calibrate, fleetdeck query --name routing_share
WITH bounds AS (
    SELECT
        coalesce($to::TIMESTAMP, (now() AT TIME ZONE 'UTC')::TIMESTAMP) AS window_end,
        coalesce($from::TIMESTAMP, window_end - INTERVAL 30 DAY) AS window_start
),

routed AS (
    SELECT
        traces.workflow_id,
        traces.tier,
        traces.provider,
        coalesce(
            traces.response_model,
            json_extract_string(traces.attempt_log, '$[#-1].model'),
            CASE WHEN traces.request_model NOT LIKE 'route:%' THEN traces.request_model END
        ) AS model,
        coalesce(traces.tier IN ('small', 'local') OR traces.provider = 'local', false) AS small_or_local,
        traces.cost_usd
    FROM traces
    CROSS JOIN bounds
    WHERE traces.ts_start >= bounds.window_start
      AND traces.ts_start < bounds.window_end
      AND traces.status IN ('ok', 'partial', 'error')
      AND ($workflow::VARCHAR IS NULL OR traces.workflow_id = $workflow::VARCHAR)
),

per_model AS (
    SELECT
        CASE WHEN grouping(workflow_id) = 0 THEN 'workflow' ELSE 'overall' END AS scope,
        workflow_id,
        tier,
        provider,
        model,
        small_or_local,
        count(*) AS calls,
        coalesce(sum(cost_usd), 0) AS cost_usd
    FROM routed
    GROUP BY GROUPING SETS (
        (workflow_id, tier, provider, model, small_or_local),
        (tier, provider, model, small_or_local)
    )
)

SELECT
    scope,
    workflow_id,
    tier,
    provider,
    model,
    small_or_local,
    calls,
    calls / sum(calls) OVER scope_rows AS share,
    coalesce(sum(calls) FILTER (WHERE small_or_local) OVER scope_rows, 0)
        / sum(calls) OVER scope_rows AS small_or_local_share,
    cost_usd
FROM per_model
WINDOW scope_rows AS (PARTITION BY scope, workflow_id)
ORDER BY scope DESC, workflow_id NULLS LAST, calls DESC, tier, provider, model
