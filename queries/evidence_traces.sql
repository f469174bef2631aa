-- evidence_traces: Every row of traces in the window, for the evidence pack (fleetdeck audit export).
-- Rows whose ts_start lies in [from, to), oldest first; all columns as stored.
-- param from: TIMESTAMP = `to` - 180 days | start of the window, inclusive (UTC)
-- param to: TIMESTAMP = now | end of the window, exclusive (UTC)
-- users: fleetdeck audit export
WITH bounds AS (
    SELECT
        coalesce($to::TIMESTAMP, (now() AT TIME ZONE 'UTC')::TIMESTAMP) AS window_end,
        coalesce($from::TIMESTAMP, window_end - INTERVAL 180 DAY) AS window_start
)

SELECT traces.*
FROM traces
CROSS JOIN bounds
WHERE traces.ts_start >= bounds.window_start
  AND traces.ts_start < bounds.window_end
ORDER BY traces.ts_start
