-- 005: the response cache (console/gateway/cache.py) and what a trace says about it.

-- One cached answer. entry_id is the request_id of the call that produced it, so its
-- redacted request and response are in payloads. exact_key hashes the whole normalised
-- request; scope hashes everything but the last user turn (route and its primary model,
-- system prompt, tools, output-changing parameters, environment, embedder): semantic
-- lookups only ever compare vectors within one scope. NULL scope: exact hits only.
CREATE TABLE cache_entries (
    entry_id   VARCHAR PRIMARY KEY,
    exact_key  VARCHAR NOT NULL,
    scope      VARCHAR,
    route      VARCHAR,
    embedder   VARCHAR,
    vector     FLOAT[],
    response   JSON NOT NULL,
    model      VARCHAR,                          -- provider/model that answered
    cost_usd   DOUBLE,                           -- what the answer cost: what a hit saves
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL
);

ALTER TABLE traces ADD COLUMN cache_saved_usd DOUBLE;    -- hits: cost of the answer replayed
ALTER TABLE traces ADD COLUMN cache_entry VARCHAR;       -- hits and shadow lookups: the entry's entry_id
ALTER TABLE traces ADD COLUMN cache_shadow VARCHAR;      -- cache: shadow routes: exact | semantic | miss, what a lookup would have served
