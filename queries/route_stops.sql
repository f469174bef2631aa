-- route_stops: Routes stopped by an operator and not resumed since, from the audit log.
-- The latest route.stopped or route.resumed entry of each route decides; a route whose
-- latest entry is route.stopped is stopped. The gateway loads this at start, so a stop
-- survives a restart.
-- users: gateway route stops, audit pane, fleetdeck query --name route_stops
WITH latest AS (
    SELECT
        subject AS route,
        action,
        actor,
        ts,
        json_extract_string(payload, '$.reason') AS reason,
        row_number() OVER (PARTITION BY subject ORDER BY seq DESC) AS newest
    FROM audit_log
    WHERE action IN ('route.stopped', 'route.resumed')
)

SELECT route, actor, ts AS stopped_at, reason
FROM latest
WHERE newest = 1 AND action = 'route.stopped'
ORDER BY route
