-- 002: virtual keys, and what the audit chain needs to be verifiable.

-- A virtual key is stored as a keyed hash (HMAC-SHA256 under a secret kept in
-- keyring); the key itself is shown once, when it is created.
CREATE TABLE virtual_keys (
    key_id      VARCHAR PRIMARY KEY,           -- what traces carry (key_id)
    name        VARCHAR NOT NULL UNIQUE,
    environment VARCHAR NOT NULL,              -- dev | staging | prod
    key_hash    VARCHAR NOT NULL UNIQUE,
    key_hint    VARCHAR NOT NULL,              -- the last four characters, to tell keys apart
    daily_cap   DOUBLE,                        -- USD, hard
    monthly_cap DOUBLE,                        -- USD, hard
    routes      VARCHAR[],                     -- NULL: every route of its environment
    created_at  TIMESTAMP NOT NULL,
    created_by  VARCHAR,
    revoked_at  TIMESTAMP
);

-- Each audit entry hashes the exact canonical JSON (RFC 8785) it stores; the recorder
-- skips event ids already stored, so replaying the spool appends nothing twice.
ALTER TABLE audit_log ADD COLUMN event_id VARCHAR;
ALTER TABLE audit_log ADD COLUMN payload_hash VARCHAR;
ALTER TABLE audit_log ADD COLUMN canonical VARCHAR;
