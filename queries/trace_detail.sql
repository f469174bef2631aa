-- trace_detail: One trace with everything it carries, and its redacted request and response bodies.
-- The trace's row of `traces` (attempt_log, guard_results, tool_calls as JSON text) plus
-- payload_request and payload_response from `payloads` (NULL when nothing was kept).
-- param request_id: VARCHAR = none | the trace's request_id
-- users: traffic pane (trace detail), fleetdeck query --name trace_detail
SELECT
    traces.*,
    payloads.request AS payload_request,
    payloads.response AS payload_response
FROM traces
LEFT JOIN payloads ON payloads.payload_ref = traces.payload_ref
WHERE traces.request_id = $request_id::VARCHAR
