-- golden_last_pass: The last run of a golden set with the same prompt name that passed its gate.
-- `fleetdeck eval run` fails a run whose pass rate is below this one's score, so a new prompt
-- version cannot quietly do worse than the last one that passed. Runs without a prompt
-- compare with runs without a prompt.
-- param golden_set: VARCHAR = '' | the golden set's name
-- param prompt_name: VARCHAR = NULL | the prompt's name; NULL for runs without a prompt
-- users: fleetdeck eval run, fleetdeck query --name golden_last_pass
SELECT run_id, golden_set, prompt_name, prompt_version, route, started_at, cases, passed, score
FROM eval_runs
WHERE
    golden_set = coalesce($golden_set, '')
    AND prompt_name IS NOT DISTINCT FROM $prompt_name
    AND gate_passed
ORDER BY started_at DESC, run_id DESC
LIMIT 1
