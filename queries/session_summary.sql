-- session_summary: One row per session: its calls, protocols, spend, errors and time span, latest first.
-- A session groups calls that carried the same X-Fleetdeck-Session header (or
-- metadata session / conversation id), whatever protocol each spoke.
-- param session_id: VARCHAR = all | only this session
-- param since: TIMESTAMP = all time | only sessions with a call at or after this time
-- param limit: INTEGER = 200 | at most this many sessions
-- users: trace view (session), fleetdeck query --name session_summary
SELECT
    session_id,
    count(*) AS calls,
    list(DISTINCT protocol ORDER BY protocol) FILTER (WHERE protocol IS NOT NULL) AS protocols,
    list(DISTINCT workflow_id ORDER BY workflow_id) FILTER (WHERE workflow_id IS NOT NULL) AS workflows,
    count(*) FILTER (WHERE status NOT IN ('ok', 'cached')) AS not_ok,
    coalesce(sum(input_tokens), 0) AS input_tokens,
    coalesce(sum(output_tokens), 0) AS output_tokens,
    coalesce(sum(cost_usd), 0) AS cost_usd,
    min(ts_start) AS first_call,
    max(coalesce(ts_end, ts_start)) AS last_call
FROM traces
WHERE session_id IS NOT NULL
  AND ($session_id::VARCHAR IS NULL OR session_id = $session_id::VARCHAR)
  AND ($since::TIMESTAMP IS NULL OR ts_start >= $since::TIMESTAMP)
GROUP BY session_id
ORDER BY last_call DESC, session_id
LIMIT coalesce($limit::INTEGER, 200)
