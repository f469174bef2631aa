-- scorecard_incidents: Incidents from the audit log: breaker ejections, budget breaches, drift and other alerts, route stops.
-- One row per (incident, workflow it touched) for audit_log events with ts in [from, to):
-- kind 'breaker_ejection' (action breaker.opened), 'budget_breach' (budget.breach),
-- 'route_stop' (route.stopped), 'drift_alert' (alert.raised with payload kind 'drift') and
-- 'alert' (any other alert.raised; payload kind in alert_kind, e.g. breaker, cost_spike).
-- severity: payload.severity when set, else 'critical' for breaker ejections, budget
-- breaches and route stops. Workflows touched, from the subject: 'workflow:W' -> W;
-- 'route:R' -> the workflows with a call on route R in the window; 'key:K' -> the
-- workflows with a call of key K in the window; 'provider:P/M' (or 'provider:P') -> the
-- workflows with a call whose attempt_log tried model P/M (or provider P) on the UTC day
-- of the event. An incident that touches no workflow has one row with workflow_id NULL.
-- param from: TIMESTAMP = `to` - 30 days | start of the window, inclusive (UTC)
-- param to: TIMESTAMP = now | end of the window, exclusive (UTC)
-- users: scorecard, fleetdeck query --name scorecard_incidents
WITH bounds AS (
    SELECT
        coalesce($to::TIMESTAMP, (now() AT TIME ZONE 'UTC')::TIMESTAMP) AS window_end,
        coalesce($from::TIMESTAMP, window_end - INTERVAL 30 DAY) AS window_start
),

events AS (
    SELECT
        audit_log.seq,
        audit_log.ts,
        audit_log.action,
        audit_log.subject,
        audit_log.actor,
        json_extract_string(audit_log.payload, '$.kind') AS alert_kind,
        CASE
            WHEN audit_log.action = 'breaker.opened' THEN 'breaker_ejection'
            WHEN audit_log.action = 'budget.breach' THEN 'budget_breach'
            WHEN audit_log.action = 'route.stopped' THEN 'route_stop'
            WHEN json_extract_string(audit_log.payload, '$.kind') = 'drift' THEN 'drift_alert'
            ELSE 'alert'
        END AS kind,
        coalesce(
            json_extract_string(audit_log.payload, '$.severity'),
            CASE WHEN audit_log.action <> 'alert.raised' THEN 'critical' ELSE 'warning' END
        ) AS severity,
        split_part(audit_log.subject, ':', 1) AS subject_kind,
        substr(audit_log.subject, length(split_part(audit_log.subject, ':', 1)) + 2) AS subject_name,
        coalesce(
            json_extract_string(audit_log.payload, '$.message'),
            json_extract_string(audit_log.payload, '$.reason'),
            json_extract_string(audit_log.payload, '$.effect'),
            json_extract_string(audit_log.payload, '$.last_error')
        ) AS detail
    FROM audit_log
    CROSS JOIN bounds
    WHERE audit_log.ts >= bounds.window_start
      AND audit_log.ts < bounds.window_end
      AND audit_log.action IN ('breaker.opened', 'budget.breach', 'route.stopped', 'alert.raised')
),

windowed AS (
    SELECT traces.workflow_id, traces.route, traces.key_id, traces.ts_start, traces.attempt_log
    FROM traces
    CROSS JOIN bounds
    WHERE traces.ts_start >= bounds.window_start
      AND traces.ts_start < bounds.window_end
      AND traces.workflow_id IS NOT NULL
),

touched AS (
    SELECT DISTINCT events.seq, windowed.workflow_id
    FROM events
    INNER JOIN windowed
        ON (events.subject_kind = 'workflow' AND windowed.workflow_id = events.subject_name)
        OR (events.subject_kind = 'route' AND windowed.route = events.subject_name)
        OR (events.subject_kind = 'key' AND windowed.key_id = events.subject_name)
        OR (
            events.subject_kind = 'provider'
            AND windowed.ts_start::DATE = events.ts::DATE
            AND (
                list_contains(json_extract_string(windowed.attempt_log, '$[*].model'), events.subject_name)
                OR list_contains(json_extract_string(windowed.attempt_log, '$[*].provider'), events.subject_name)
            )
        )
)

SELECT
    events.seq,
    events.ts,
    events.kind,
    events.severity,
    events.action,
    events.alert_kind,
    events.subject,
    events.actor,
    events.detail,
    touched.workflow_id
FROM events
LEFT JOIN touched USING (seq)
ORDER BY events.seq, touched.workflow_id NULLS LAST
