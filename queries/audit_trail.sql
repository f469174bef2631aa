-- audit_trail: The audit log in the window, in chain order (seq), with optional filters.
-- Rows are selected on ts and ordered by seq. action is a SQL LIKE pattern, so
-- 'approval.%' selects every approval event; actor and actor_kind match exactly.
-- param from: TIMESTAMP = `to` - 30 days | start of the window, inclusive (UTC)
-- param to: TIMESTAMP = now | end of the window, exclusive (UTC)
-- param actor: VARCHAR = all | only events of this actor
-- param actor_kind: VARCHAR = all | only this kind of actor: human, key or system
-- param action: VARCHAR = all | only actions matching this LIKE pattern
-- users: audit pane, evidence export, fleetdeck query --name audit_trail
WITH bounds AS (
    SELECT
        coalesce($to::TIMESTAMP, (now() AT TIME ZONE 'UTC')::TIMESTAMP) AS window_end,
        coalesce($from::TIMESTAMP, window_end - INTERVAL 30 DAY) AS window_start
)

SELECT
    audit_log.seq,
    audit_log.ts,
    audit_log.actor,
    audit_log.actor_kind,
    audit_log.action,
    audit_log.subject,
    audit_log.payload,
    audit_log.prev_hash,
    audit_log.hash
FROM audit_log
CROSS JOIN bounds
WHERE audit_log.ts >= bounds.window_start
  AND audit_log.ts < bounds.window_end
  AND ($actor::VARCHAR IS NULL OR audit_log.actor = $actor::VARCHAR)
  AND ($actor_kind::VARCHAR IS NULL OR audit_log.actor_kind = $actor_kind::VARCHAR)
  AND ($action::VARCHAR IS NULL OR audit_log.action LIKE $action::VARCHAR)
ORDER BY audit_log.seq
