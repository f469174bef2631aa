-- drift_verdicts: Judge verdicts per workflow and component, in the recent window and the baseline before it.
-- A verdict belongs to the period in which the judged call started (traces.ts_start):
-- 'current' is the `days` days before `as_of`, 'baseline' the `baseline_days` days before
-- that. Per judged call and component only the latest verdict counts (a human override
-- replaces the judge's). Judge calls themselves (workflow 'fleetdeck-judge') are left out.
-- One row per workflow, period, component and verdict (correct, partial, incorrect) with its count.
-- param as_of: TIMESTAMP = now | end of the recent window, exclusive (UTC)
-- param days: INTEGER = 7 | length of the recent window in days
-- param baseline_days: INTEGER = 28 | length of the baseline window in days, just before the recent one
-- param workflow: VARCHAR = all | only this workflow_id
-- users: fleetdeck drift, drift pane, engine drift monitor
WITH bounds AS (
    SELECT
        coalesce($as_of::TIMESTAMP, (now() AT TIME ZONE 'UTC')::TIMESTAMP) AS window_end,
        window_end - to_days(coalesce($days::INTEGER, 7)) AS window_start,
        window_start - to_days(coalesce($baseline_days::INTEGER, 28)) AS baseline_start
),

judged AS (
    SELECT
        traces.workflow_id,
        CASE WHEN traces.ts_start >= bounds.window_start THEN 'current' ELSE 'baseline' END AS period,
        coalesce(evals.component, 'answer') AS component,
        evals.verdict
    FROM evals
    INNER JOIN traces USING (request_id)
    CROSS JOIN bounds
    WHERE traces.ts_start >= bounds.baseline_start
      AND traces.ts_start < bounds.window_end
      AND traces.workflow_id IS NOT NULL
      AND traces.workflow_id <> 'fleetdeck-judge'
      AND ($workflow::VARCHAR IS NULL OR traces.workflow_id = $workflow::VARCHAR)
      AND evals.verdict IN ('correct', 'partial', 'incorrect')
    QUALIFY row_number() OVER (
        PARTITION BY evals.request_id, coalesce(evals.component, 'answer') ORDER BY evals.ts DESC, evals.eval_id DESC
    ) = 1
)

SELECT workflow_id, period, component, verdict, count(*) AS verdicts
FROM judged
GROUP BY ALL
ORDER BY workflow_id, period, component, verdict
