-- scorecard_policy: Policy violations per workflow: critical ones, blocked prompt injections, policy denials, overrides.
-- critical_violations: evals with verdict 'incorrect' on the component 'policy_compliance'
-- whose judged call started in [from, to) (workflow: that call's workflow_id): an answer
-- that broke policy reached a user. injection_blocks: calls in the window with status
-- 'blocked' and error_type 'prompt_injection' (attacks stopped; not violations).
-- policy_denials: audit 'approval.denied' events by actor_kind 'system' (a policy refused a
-- tool call). overrides: audit 'override' events (a human overrode a policy decision).
-- For audit events (ts in the window) the workflow is that of payload.task_id:
-- outcomes.workflow_id, else its first non-judge call's workflow_id; NULL when unknown.
-- One row per workflow with anything to count.
-- param from: TIMESTAMP = `to` - 30 days | start of the window, inclusive (UTC)
-- param to: TIMESTAMP = now | end of the window, exclusive (UTC)
-- param workflows: VARCHAR = all | only these workflow_ids, comma-separated
-- users: scorecard, evidence export, fleetdeck query --name scorecard_policy
WITH bounds AS (
    SELECT
        coalesce($to::TIMESTAMP, (now() AT TIME ZONE 'UTC')::TIMESTAMP) AS window_end,
        coalesce($from::TIMESTAMP, window_end - INTERVAL 30 DAY) AS window_start
),

judged AS (
    SELECT traces.workflow_id, 'critical_violation' AS item
    FROM evals
    INNER JOIN traces USING (request_id)
    CROSS JOIN bounds
    WHERE traces.ts_start >= bounds.window_start
      AND traces.ts_start < bounds.window_end
      AND evals.component = 'policy_compliance'
      AND evals.verdict = 'incorrect'
),

blocked AS (
    SELECT traces.workflow_id, 'injection_block' AS item
    FROM traces
    CROSS JOIN bounds
    WHERE traces.ts_start >= bounds.window_start
      AND traces.ts_start < bounds.window_end
      AND traces.status = 'blocked'
      AND traces.error_type = 'prompt_injection'
),

audited AS (
    SELECT
        json_extract_string(audit_log.payload, '$.task_id') AS task_id,
        CASE WHEN audit_log.action = 'override' THEN 'override' ELSE 'policy_denial' END AS item
    FROM audit_log
    CROSS JOIN bounds
    WHERE audit_log.ts >= bounds.window_start
      AND audit_log.ts < bounds.window_end
      AND (
          audit_log.action = 'override'
          OR (audit_log.action = 'approval.denied' AND audit_log.actor_kind = 'system')
      )
),

task_workflows AS (
    SELECT
        audited.task_id,
        coalesce(
            any_value(outcomes.workflow_id),
            arg_min(traces.workflow_id, (traces.ts_start, traces.request_id))
                FILTER (WHERE traces.workflow_id IS NOT NULL AND traces.workflow_id <> 'fleetdeck-judge')
        ) AS workflow_id
    FROM (SELECT DISTINCT task_id FROM audited WHERE task_id IS NOT NULL) AS audited
    LEFT JOIN outcomes USING (task_id)
    LEFT JOIN traces USING (task_id)
    GROUP BY audited.task_id
),

items AS (
    SELECT workflow_id, item FROM judged
    UNION ALL
    SELECT workflow_id, item FROM blocked
    UNION ALL
    SELECT task_workflows.workflow_id, audited.item
    FROM audited
    LEFT JOIN task_workflows USING (task_id)
)

SELECT
    workflow_id,
    count(*) FILTER (WHERE item = 'critical_violation') AS critical_violations,
    count(*) FILTER (WHERE item = 'injection_block') AS injection_blocks,
    count(*) FILTER (WHERE item = 'policy_denial') AS policy_denials,
    count(*) FILTER (WHERE item = 'override') AS overrides
FROM items
WHERE $workflows::VARCHAR IS NULL OR list_contains(string_split($workflows::VARCHAR, ','), workflow_id)
GROUP BY workflow_id
ORDER BY workflow_id NULLS LAST
