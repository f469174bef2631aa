-- judge_coverage: Per environment, the answered calls of a window and how many of them the judge has a verdict on.
-- answered: traces with status ok and operation chat or text_completion, the calls the
-- sampled judge looks at. judged: those with at least one eval whose evaluator starts
-- with 'judge:' (human and golden verdicts do not count). environment NULL is its own row.
-- param from: TIMESTAMP = `to` - 1 day | start of the window, inclusive (UTC)
-- param to: TIMESTAMP = now | end of the window, exclusive (UTC)
-- users: overview pane, fleetdeck query --name judge_coverage
WITH bounds AS (
    SELECT
        coalesce($to::TIMESTAMP, (now() AT TIME ZONE 'UTC')::TIMESTAMP) AS window_end,
        coalesce($from::TIMESTAMP, window_end - INTERVAL 1 DAY) AS window_start
),

answered AS (
    SELECT traces.request_id, traces.environment
    FROM traces
    CROSS JOIN bounds
    WHERE traces.ts_start >= bounds.window_start
      AND traces.ts_start < bounds.window_end
      AND traces.status = 'ok'
      AND traces.operation IN ('chat', 'text_completion')
)

SELECT
    answered.environment,
    count(*) AS answered,
    count(*) FILTER (
        WHERE EXISTS (
            SELECT 1 FROM evals
            WHERE evals.request_id = answered.request_id AND evals.evaluator LIKE 'judge:%'
        )
    ) AS judged
FROM answered
GROUP BY answered.environment
ORDER BY answered.environment NULLS LAST
