-- trace_audit: The audit entries that name one call: as their subject, or anywhere in their payload.
-- A call is named by its request_id as the subject (an override, a held tool call's
-- decision) or inside the payload (request_id, a handoff's provenance, a fallback note).
-- Oldest first, in chain order.
-- param request_id: VARCHAR = none | the trace's request_id
-- users: trace view (audit entries), fleetdeck query --name trace_audit
SELECT
    audit_log.seq,
    audit_log.ts,
    audit_log.actor,
    audit_log.actor_kind,
    audit_log.action,
    audit_log.subject,
    audit_log.payload
FROM audit_log
WHERE audit_log.subject = $request_id::VARCHAR
   OR contains(CAST(audit_log.payload AS VARCHAR), $request_id::VARCHAR)
ORDER BY audit_log.seq
