-- scorecard_completeness: Trace completeness per workflow: requests with a full trace / requests seen.
-- Requests seen: the traces whose ts_start lies in [from, to), plus the request_ids the store
-- refers to without holding their trace (missing traces): a parent_id of a call in the
-- window (counted under that call's workflow_id), an evals.request_id of an eval whose ts is
-- in the window, and an audit payload request_id of an event in the window (both under
-- workflow_id NULL: the missing trace's workflow is unknown). Each missing id counts once.
-- A full trace has ts_end, http_status and latency_ms set; and when the call reached a
-- provider (status ok, partial or error) a provider and an attempt_log that is a non-empty
-- JSON array; and when a model answered (ok, partial) a response_model and a cost_usd.
-- completeness = full_traces / requests_seen (NULL when nothing was seen).
-- param from: TIMESTAMP = `to` - 30 days | start of the window, inclusive (UTC)
-- param to: TIMESTAMP = now | end of the window, exclusive (UTC)
-- param workflows: VARCHAR = all | only these workflow_ids, comma-separated (drops the NULL row)
-- users: scorecard, evidence export, fleetdeck query --name scorecard_completeness
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

graded AS (
    SELECT
        workflow_id,
        ts_end IS NOT NULL
        AND http_status IS NOT NULL
        AND latency_ms IS NOT NULL
        AND (
            status NOT IN ('ok', 'partial', 'error')
            OR (
                provider IS NOT NULL
                AND coalesce(json_type(attempt_log) = 'ARRAY' AND json_array_length(attempt_log) > 0, false)
            )
        )
        AND (status NOT IN ('ok', 'partial') OR (response_model IS NOT NULL AND cost_usd IS NOT NULL))
            AS is_full
    FROM windowed
),

referenced AS (
    SELECT windowed.parent_id AS request_id, windowed.workflow_id, 1 AS preference
    FROM windowed
    WHERE windowed.parent_id IS NOT NULL
    UNION ALL
    SELECT evals.request_id, NULL, 2
    FROM evals
    CROSS JOIN bounds
    WHERE evals.ts >= bounds.window_start AND evals.ts < bounds.window_end
    UNION ALL
    SELECT json_extract_string(audit_log.payload, '$.request_id'), NULL, 3
    FROM audit_log
    CROSS JOIN bounds
    WHERE audit_log.ts >= bounds.window_start
      AND audit_log.ts < bounds.window_end
      AND json_extract_string(audit_log.payload, '$.request_id') IS NOT NULL
),

missing AS (
    SELECT
        referenced.request_id,
        arg_min(referenced.workflow_id, (referenced.preference, referenced.workflow_id)) AS workflow_id
    FROM referenced
    ANTI JOIN traces USING (request_id)
    GROUP BY referenced.request_id
),

per_workflow AS (
    SELECT workflow_id, count(*) AS traces, count(*) FILTER (WHERE is_full) AS full_traces, 0 AS missing
    FROM graded
    GROUP BY workflow_id
    UNION ALL
    SELECT workflow_id, 0, 0, count(*)
    FROM missing
    GROUP BY workflow_id
)

SELECT
    workflow_id,
    sum(traces)::BIGINT AS traces,
    sum(missing)::BIGINT AS missing_traces,
    (sum(traces) + sum(missing))::BIGINT AS requests_seen,
    sum(full_traces)::BIGINT AS full_traces,
    sum(full_traces) / nullif(sum(traces) + sum(missing), 0) AS completeness
FROM per_workflow
WHERE $workflows::VARCHAR IS NULL OR list_contains(string_split($workflows::VARCHAR, ','), workflow_id)
GROUP BY workflow_id
ORDER BY workflow_id NULLS LAST
