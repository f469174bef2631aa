-- evidence_audit_log: Every row of audit_log in the window, for the evidence pack (fleetdeck audit export).
-- Rows whose ts lies in [from, to), oldest first; all columns as stored.
-- param from: TIMESTAMP = `to` - 180 days | start of the window, inclusive (UTC)
-- param to: TIMESTAMP = now | end of the window, exclusive (UTC)
-- users: fleetdeck audit export
WITH bounds AS (
    SELECT
        coalesce($to::TIMESTAMP, (now() AT TIME ZONE 'UTC')::TIMESTAMP) AS window_end,
        coalesce($from::TIMESTAMP, window_end - INTERVAL 180 DAY) AS window_start
)

SELECT audit_log.*
FROM audit_log
CROSS JOIN bounds
WHERE audit_log.ts >= bounds.window_start
  AND audit_log.ts < bounds.window_end
ORDER BY audit_log.ts
