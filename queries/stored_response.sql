-- stored_response: One response the Responses API stored, if the key asking made it.
-- A response is visible to the virtual key that made it only (key_id; NULL on a gateway that
-- requires no key): any other key finds nothing, exactly as for an id never stored.
-- input_items and response are JSON text, redacted as payloads are.
-- param response_id: VARCHAR = none | the response's id (resp_…)
-- param key_id: VARCHAR = none | the asking key's key_id (none: a gateway without keys)
-- users: the gateway (GET /v1/responses/{id}, input_items, previous_response_id)
SELECT response_id, request_id, key_id, created_at, previous_response_id, input_items, response
FROM stored_responses
WHERE response_id = $response_id::VARCHAR
  AND key_id IS NOT DISTINCT FROM $key_id::VARCHAR
