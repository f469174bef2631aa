-- drift_alerts: The latest drift alerts, newest first: stored alerts and alert.raised audit events of kind drift.
-- Rows of `alerts` with kind 'drift', and `alert.raised` audit entries whose payload kind
-- is 'drift' that name no stored alert (imported history, e.g. the sample traces). Only
-- those raised before `to`. metric, baseline, current and severity come from the payload
-- for audit entries; message is the stored alert's, else the audit subject.
-- param to: TIMESTAMP = now | only alerts raised before this (UTC)
-- param limit: INTEGER = 50 | at most this many alerts
-- users: drift pane, fleetdeck query --name drift_alerts
WITH bounds AS (
    SELECT coalesce($to::TIMESTAMP, (now() AT TIME ZONE 'UTC')::TIMESTAMP) AS until
),

stored AS (
    SELECT alert_id, ts, workflow_id, metric, baseline, current, severity, message, 'alerts' AS source
    FROM alerts
    WHERE kind = 'drift'
),

audited AS (
    SELECT
        coalesce(payload->>'alert_id', 'audit-' || seq::VARCHAR) AS alert_id,
        ts,
        regexp_replace(subject, '^workflow:', '') AS workflow_id,
        payload->>'metric' AS metric,
        TRY_CAST(payload->>'baseline' AS DOUBLE) AS baseline,
        TRY_CAST(payload->>'current' AS DOUBLE) AS current,
        payload->>'severity' AS severity,
        subject AS message,
        'audit_log' AS source
    FROM audit_log
    WHERE action = 'alert.raised' AND payload->>'kind' = 'drift'
)

SELECT found.*
FROM (
    SELECT * FROM stored
    UNION ALL
    SELECT * FROM audited WHERE alert_id NOT IN (SELECT alert_id FROM stored)
) AS found
CROSS JOIN bounds
WHERE found.ts < bounds.until
ORDER BY found.ts DESC, found.alert_id
LIMIT coalesce($limit::INTEGER, 50)
