-- 003: signed checkpoints of the audit chain, and triggers that refuse edits of the log.

-- A checkpoint signs the chain's size and head with the instance's Ed25519 key; the
-- same lines are appended to <data dir>/audit/checkpoints.jsonl, outside the database,
-- so truncating the log (and its checkpoints here) is still caught.
CREATE TABLE audit_checkpoints (
    seq        BIGINT PRIMARY KEY,             -- the chain's size when signed: entries 1..seq
    head_hash  VARCHAR NOT NULL,               -- hash of entry `seq`
    ts         TIMESTAMP NOT NULL,
    public_key VARCHAR NOT NULL,               -- hex of the Ed25519 public key
    signature  VARCHAR NOT NULL                -- hex Ed25519 signature of `signed`
);

-- DuckDB triggers run their body in the same statement; error() aborts it, so an
-- UPDATE or DELETE of the audit log rolls back. A guardrail against mistakes, not an
-- attacker with the file (the chain and checkpoints catch those). Purging payloads for
-- retention lifts it inside one transaction (console/store/audit.py).
CREATE TABLE audit_guard (refused VARCHAR);
CREATE TRIGGER audit_log_no_update AFTER UPDATE ON audit_log FOR EACH STATEMENT
    INSERT INTO audit_guard SELECT error('audit_log is append-only: entries cannot be updated');
CREATE TRIGGER audit_log_no_delete AFTER DELETE ON audit_log FOR EACH STATEMENT
    INSERT INTO audit_guard SELECT error('audit_log is append-only: entries cannot be deleted');
