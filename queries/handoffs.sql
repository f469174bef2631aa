-- handoffs: Every handoff between agents in the window, in its latest state, with its provenance.
-- One row per handoff id (the latest of its handoff.accepted / held / refused audit entries):
-- the contract, the task, who submitted it, the gate and who decided, the problem when refused,
-- the source traces per field (JSON) and how many calls consumed it since.
-- param from: TIMESTAMP = `to` - 30 days | start of the window, inclusive (UTC)
-- param to: TIMESTAMP = now | end of the window, exclusive (UTC)
-- param task: VARCHAR = all | only this task
-- users: Audit pane, trace view, fleetdeck query --name handoffs, fleetdeck audit export (handoffs.parquet)
WITH bounds AS (
    SELECT
        coalesce($to::TIMESTAMP, (now() AT TIME ZONE 'UTC')::TIMESTAMP) AS window_end,
        coalesce($from::TIMESTAMP, window_end - INTERVAL 30 DAY) AS window_start
),

decisions AS (
    SELECT
        subject AS handoff_id,
        ts,
        seq,
        actor,
        actor_kind,
        replace(action, 'handoff.', '') AS status,
        json_extract_string(payload, '$.contract') AS contract,
        json_extract_string(payload, '$.task_id') AS task_id,
        json_extract_string(payload, '$.problem') AS problem,
        json_extract_string(payload, '$.payload_sha256') AS payload_sha256,
        json_extract_string(payload, '$.gate.kind') AS gate,
        json_extract(payload, '$.provenance') AS provenance
    FROM audit_log
    WHERE action IN ('handoff.accepted', 'handoff.held', 'handoff.refused')
),

submitted AS (
    SELECT handoff_id, min(ts) AS submitted_at, arg_min(actor, seq) AS submitted_by
    FROM decisions
    GROUP BY handoff_id
),

consumed AS (
    SELECT subject AS handoff_id, count(*) AS consumed_by_calls
    FROM audit_log
    WHERE action = 'handoff.consumed'
    GROUP BY subject
)

SELECT
    d.handoff_id,
    d.contract,
    d.task_id,
    d.status,
    d.gate,
    s.submitted_at,
    s.submitted_by,
    d.ts AS decided_at,
    d.actor AS decided_by,
    d.problem,
    d.payload_sha256,
    d.provenance,
    coalesce(c.consumed_by_calls, 0) AS consumed_by_calls
FROM decisions AS d
JOIN submitted AS s USING (handoff_id)
LEFT JOIN consumed AS c USING (handoff_id)
CROSS JOIN bounds
WHERE s.submitted_at >= bounds.window_start
  AND s.submitted_at < bounds.window_end
  AND ($task IS NULL OR d.task_id = $task)
QUALIFY row_number() OVER (PARTITION BY d.handoff_id ORDER BY d.seq DESC) = 1
ORDER BY s.submitted_at, d.handoff_id
