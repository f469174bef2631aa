-- 001: the trace store of DESIGN.md. All timestamps are UTC (TIMESTAMP without zone).

CREATE TABLE traces (
    request_id        VARCHAR PRIMARY KEY,     -- ULID
    trace_id          VARCHAR,
    parent_id         VARCHAR,
    ts_start          TIMESTAMP NOT NULL,
    ts_end            TIMESTAMP,
    environment       VARCHAR,                 -- dev | staging | prod
    key_id            VARCHAR,
    workflow_id       VARCHAR,
    intent            VARCHAR,
    tier              VARCHAR,                 -- small | large | local …
    user_role         VARCHAR,
    tenant            VARCHAR,
    task_id           VARCHAR,
    step              INTEGER,
    prompt_name       VARCHAR,
    prompt_version    VARCHAR,
    operation         VARCHAR,                 -- chat | text_completion | embeddings
    route             VARCHAR,
    request_model     VARCHAR,
    response_model    VARCHAR,
    provider          VARCHAR,
    reason_code       VARCHAR,
    attempts          INTEGER,
    attempt_log       JSON,
    input_tokens      BIGINT,
    output_tokens     BIGINT,
    cache_read_tokens BIGINT,
    reasoning_tokens  BIGINT,
    context_tokens    BIGINT,
    cost_usd          DOUBLE,
    price_source      VARCHAR,
    latency_ms        DOUBLE,
    ttft_ms           DOUBLE,
    status            VARCHAR NOT NULL,        -- ok | partial | error | blocked | over_budget | cached
    error_type        VARCHAR,
    http_status       INTEGER,
    finish_reasons    VARCHAR[],
    stream            BOOLEAN,
    cache             VARCHAR,                 -- miss | exact | semantic
    cache_similarity  DOUBLE,
    guard_results     JSON,
    pii_redactions    INTEGER,
    injection_score   DOUBLE,
    schema_valid      BOOLEAN,
    tool_calls        JSON,
    retrieval_doc_ids VARCHAR[],
    request_hash      VARCHAR,
    payload_ref       VARCHAR
);

-- Redacted request and response bodies, apart so that traces stays narrow.
CREATE TABLE payloads (
    payload_ref VARCHAR PRIMARY KEY,
    request_id  VARCHAR NOT NULL,
    ts          TIMESTAMP NOT NULL,
    request     JSON,
    response    JSON
);

CREATE TABLE outcomes (
    task_id     VARCHAR PRIMARY KEY,
    workflow_id VARCHAR,
    status      VARCHAR NOT NULL,              -- resolved | failed | abandoned
    value       DOUBLE,                        -- business value in USD, when known
    ts          TIMESTAMP NOT NULL,
    reporter    VARCHAR
);

CREATE TABLE evals (
    eval_id          VARCHAR PRIMARY KEY,
    request_id       VARCHAR NOT NULL,
    evaluator        VARCHAR NOT NULL,         -- judge:<model> | human:<name> | golden:<set>
    rubric           VARCHAR,
    component        VARCHAR,                  -- retrieval | tool_selection | policy_compliance | answer
    verdict          VARCHAR NOT NULL,         -- correct | partial | incorrect
    score            DOUBLE,
    rationale        VARCHAR,
    judge_cost_usd   DOUBLE,
    judge_request_id VARCHAR,
    ts               TIMESTAMP NOT NULL
);

CREATE TABLE audit_log (
    seq        BIGINT PRIMARY KEY,
    ts         TIMESTAMP NOT NULL,
    actor      VARCHAR NOT NULL,
    actor_kind VARCHAR NOT NULL,               -- human | key | system
    action     VARCHAR NOT NULL,
    subject    VARCHAR,
    payload    JSON,
    prev_hash  VARCHAR,
    hash       VARCHAR
);

CREATE TABLE prompts (
    name       VARCHAR NOT NULL,
    version    VARCHAR NOT NULL,
    template   VARCHAR NOT NULL,
    hash       VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL,
    author     VARCHAR,
    PRIMARY KEY (name, version)
);

CREATE TABLE eval_runs (
    run_id         VARCHAR PRIMARY KEY,
    golden_set     VARCHAR NOT NULL,
    prompt_name    VARCHAR,
    prompt_version VARCHAR,
    route          VARCHAR,
    started_at     TIMESTAMP NOT NULL,
    finished_at    TIMESTAMP,
    cases          INTEGER,
    passed         INTEGER,
    score          DOUBLE,
    gate_passed    BOOLEAN,
    report         JSON
);

CREATE TABLE alerts (
    alert_id        VARCHAR PRIMARY KEY,
    ts              TIMESTAMP NOT NULL,
    kind            VARCHAR NOT NULL,          -- drift | budget | breaker | …
    workflow_id     VARCHAR,
    metric          VARCHAR,
    baseline        DOUBLE,
    current         DOUBLE,
    delta           DOUBLE,
    severity        VARCHAR,                   -- info | warning | critical
    message         VARCHAR,
    acknowledged_at TIMESTAMP
);
