-- harvest_cases: Judged calls of a workflow with a given verdict, with their stored request and response.
-- A call's verdict is its latest human override if it has one, else its latest judge verdict
-- (golden-set verdicts are left out). Calls without a stored request have null request.
-- `fleetdeck eval harvest` turns the rows into golden cases; newest calls first.
-- param workflow: VARCHAR = '' | the workflow_id of the judged calls
-- param verdict: VARCHAR = 'incorrect' | correct, partial or incorrect
-- param max_cases: INTEGER = 50 | at most this many calls
-- users: fleetdeck eval harvest, fleetdeck query --name harvest_cases
WITH verdicts AS (
    SELECT
        request_id,
        verdict,
        evaluator,
        rubric,
        component,
        rationale,
        row_number() OVER (
            PARTITION BY request_id ORDER BY starts_with(evaluator, 'human:') DESC, ts DESC, eval_id DESC
        ) AS newest
    FROM evals
    WHERE NOT starts_with(evaluator, 'golden:')
)

SELECT
    t.request_id,
    t.ts_start,
    t.workflow_id,
    t.route,
    t.request_model,
    t.prompt_name,
    t.prompt_version,
    t.schema_valid,
    v.verdict,
    v.evaluator,
    v.rubric,
    v.component,
    v.rationale,
    p.request::VARCHAR AS request,
    p.response::VARCHAR AS response
FROM verdicts AS v
INNER JOIN traces AS t ON t.request_id = v.request_id
LEFT JOIN payloads AS p ON p.request_id = t.request_id
WHERE
    v.newest = 1
    AND t.workflow_id = coalesce($workflow, '')
    AND v.verdict = coalesce($verdict, 'incorrect')
ORDER BY t.ts_start DESC, t.request_id DESC
LIMIT coalesce($max_cases, 50)
