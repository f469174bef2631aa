-- trace_verdicts: Every verdict on one call, newest first: the judge's, golden runs' and humans' overrides.
-- evaluator says who gave it (judge:<model>, human:<actor>, golden:<set>); human is true
-- for an override (the newest human verdict stands over the judge's).
-- param request_id: VARCHAR = none | the trace's request_id
-- users: trace view (verdicts), fleetdeck query --name trace_verdicts
SELECT
    evals.eval_id,
    evals.ts,
    evals.evaluator,
    evals.evaluator LIKE 'human:%' AS human,
    coalesce(evals.component, 'answer') AS component,
    evals.verdict,
    evals.score,
    evals.rationale,
    evals.judge_cost_usd
FROM evals
WHERE evals.request_id = $request_id::VARCHAR
ORDER BY evals.ts DESC, evals.eval_id DESC
