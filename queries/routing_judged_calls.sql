-- routing_judged_calls: Served calls of one route with the features of the difficulty model and the judge's verdict.
-- One row per served call (status ok or partial, not from the cache) of the route in the
-- window; verdict is the newest evals row of the call, null when it was not judged.
-- tools counts the tool calls of the answer; wants_json is true when schema_valid is set
-- (the call asked for a JSON answer). Rows without a tier are left out.
-- param route: VARCHAR = none | the route (its intent)
-- param from: TIMESTAMP = all time | start of the window, inclusive (UTC)
-- param to: TIMESTAMP = all time | end of the window, exclusive (UTC)
-- users: fleetdeck routing calibrate
WITH verdicts AS (
    SELECT request_id, arg_max(verdict, ts) AS verdict
    FROM evals
    GROUP BY request_id
)

SELECT
    t.request_id,
    t.tier,
    t.response_model,
    coalesce(t.input_tokens, 0) AS input_tokens,
    coalesce(t.output_tokens, 0) AS output_tokens,
    t.step,
    coalesce(json_array_length(t.tool_calls), 0) AS tools,
    t.schema_valid IS NOT NULL AS wants_json,
    coalesce(t.cost_usd, 0) AS cost_usd,
    v.verdict
FROM traces AS t
LEFT JOIN verdicts AS v USING (request_id)
WHERE
    t.route = $route
    AND t.status IN ('ok', 'partial')
    AND coalesce(t.cache, 'miss') = 'miss'
    AND t.tier IS NOT NULL
    AND ($from IS NULL OR t.ts_start >= $from)
    AND ($to IS NULL OR t.ts_start < $to)
ORDER BY t.ts_start, t.request_id
