-- optimize_spend: What a prompt search's calls have cost so far, as the gateway recorded them.
-- Every optimizer, candidate and judge call of `fleetdeck prompts optimize` carries the search's task_id.
-- param task_id: VARCHAR = '' | the search's task id (optimize-<id>)
-- users: fleetdeck prompts optimize
SELECT task_id, count(*) AS calls, coalesce(sum(cost_usd), 0) AS cost_usd,
       coalesce(sum(coalesce(input_tokens, 0) + coalesce(output_tokens, 0)), 0) AS tokens
FROM traces
WHERE task_id = $task_id
GROUP BY task_id
