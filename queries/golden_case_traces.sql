-- golden_case_traces: The traces of a golden-set run's requests: cost, latency, prompt version.
-- The `cost` and `latency` asserts of `fleetdeck eval run` read the gateway's own numbers here.
-- param request_ids: VARCHAR = '' | comma-separated request_ids
-- users: fleetdeck eval run, fleetdeck prompts optimize
SELECT request_id, cost_usd, latency_ms, ttft_ms, input_tokens, output_tokens, prompt_name, prompt_version, route, response_model, status
FROM traces
WHERE list_contains(string_split(coalesce($request_ids, ''), ','), request_id)
ORDER BY ts_start, request_id
