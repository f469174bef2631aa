-- scorecard_quality: Judge verdict mix (correct, partial, incorrect) per workflow and time bucket.
-- An eval counts in the window when the call it judged (evals.request_id = traces.request_id)
-- started in [from, to); its workflow is that call's workflow_id. Every evaluator counts
-- (judge, human, golden). Buckets are bucket_days long, counted from `from`: bucket_start =
-- from + n x bucket_days; the last one may be shorter. Buckets without evals have no row.
-- policy_incorrect: incorrect verdicts on the component 'policy_compliance'.
-- param from: TIMESTAMP = `to` - 30 days | start of the window, inclusive (UTC)
-- param to: TIMESTAMP = now | end of the window, exclusive (UTC)
-- param bucket_days: INTEGER = 7 | length of a trend bucket in days
-- param workflows: VARCHAR = all | only these workflow_ids, comma-separated
-- users: scorecard, fleetdeck query --name scorecard_quality
WITH bounds AS (
    SELECT
        coalesce($to::TIMESTAMP, (now() AT TIME ZONE 'UTC')::TIMESTAMP) AS window_end,
        coalesce($from::TIMESTAMP, window_end - INTERVAL 30 DAY) AS window_start,
        coalesce($bucket_days::INTEGER, 7) AS bucket_days
),

judged AS (
    SELECT
        traces.workflow_id,
        evals.verdict,
        evals.component,
        bounds.window_start + to_days(
            bounds.bucket_days
            * ((epoch(traces.ts_start) - epoch(bounds.window_start)) // (86400 * bounds.bucket_days))::INTEGER
        ) AS bucket_start
    FROM evals
    INNER JOIN traces USING (request_id)
    CROSS JOIN bounds
    WHERE traces.ts_start >= bounds.window_start
      AND traces.ts_start < bounds.window_end
      AND (
          $workflows::VARCHAR IS NULL
          OR list_contains(string_split($workflows::VARCHAR, ','), traces.workflow_id)
      )
)

SELECT
    workflow_id,
    bucket_start,
    count(*) AS judged,
    count(*) FILTER (WHERE verdict = 'correct') AS correct,
    count(*) FILTER (WHERE verdict = 'partial') AS partial,
    count(*) FILTER (WHERE verdict = 'incorrect') AS incorrect,
    count(*) FILTER (WHERE verdict = 'incorrect' AND component = 'policy_compliance') AS policy_incorrect
FROM judged
GROUP BY workflow_id, bucket_start
ORDER BY workflow_id NULLS LAST, bucket_start
