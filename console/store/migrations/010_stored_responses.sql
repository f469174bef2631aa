-- 010: responses the Responses API stored (`store`, default true), for `previous_response_id`
-- and `GET /v1/responses/{id}`.

-- One row per stored response, written by the recorder like a payload and purged with the
-- payloads (console/store/retention.py). Bodies are redacted as payloads are. key_id scopes
-- it: only the virtual key that made a response reads, continues or deletes it (NULL when
-- the gateway requires no key). input_items: every item the model was given, the stored
-- conversation it continued first, each with its id; response: the Response object.
CREATE TABLE stored_responses (
    response_id          VARCHAR PRIMARY KEY,   -- resp_<request_id>
    request_id           VARCHAR NOT NULL,      -- the trace of the call that made it
    key_id               VARCHAR,
    created_at           TIMESTAMP NOT NULL,
    previous_response_id VARCHAR,
    input_items          JSON NOT NULL,
    response             JSON NOT NULL
);
