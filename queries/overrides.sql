-- overrides: Human overrides and approvals from the audit log.
-- Events of actor_kind 'human' whose action names an override ('override',
-- 'override.*', 'route.override', ...: action contains 'override') or an approval
-- decision (action starts with 'approval'). kind says which. decision: payload.decision,
-- else the action's suffix for approvals ('approval.granted' -> 'granted'); reason,
-- task_id and wait_s (seconds the request waited for the human) come from the payload.
-- param from: TIMESTAMP = `to` - 30 days | start of the window, inclusive (UTC)
-- param to: TIMESTAMP = now | end of the window, exclusive (UTC)
-- param actor: VARCHAR = all | only events of this person
-- users: audit pane, approvals pane, evidence export, scorecard, fleetdeck query --name overrides
WITH bounds AS (
    SELECT
        coalesce($to::TIMESTAMP, (now() AT TIME ZONE 'UTC')::TIMESTAMP) AS window_end,
        coalesce($from::TIMESTAMP, window_end - INTERVAL 30 DAY) AS window_start
),

human_events AS (
    SELECT audit_log.*
    FROM audit_log
    CROSS JOIN bounds
    WHERE audit_log.ts >= bounds.window_start
      AND audit_log.ts < bounds.window_end
      AND audit_log.actor_kind = 'human'
      AND ($actor::VARCHAR IS NULL OR audit_log.actor = $actor::VARCHAR)
)

SELECT
    seq,
    ts,
    actor,
    CASE WHEN action LIKE 'approval%' THEN 'approval' ELSE 'override' END AS kind,
    action,
    subject,
    coalesce(
        json_extract_string(payload, '$.decision'),
        CASE WHEN action LIKE 'approval.%' THEN split_part(action, '.', 2) END
    ) AS decision,
    json_extract_string(payload, '$.reason') AS reason,
    json_extract_string(payload, '$.task_id') AS task_id,
    TRY_CAST(json_extract(payload, '$.wait_s') AS DOUBLE) AS wait_s,
    payload
FROM human_events
WHERE action LIKE '%override%' OR action LIKE 'approval%'
ORDER BY seq
