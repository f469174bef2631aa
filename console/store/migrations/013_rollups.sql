-- 013: rollups of the traces, kept by the writer as traces land (console/store/rollups.py),
-- so that the panes' named queries read thousands of rows instead of millions.
-- rollup_hourly: calls per UTC hour of ts_start and every combination of the dimensions;
-- rollup_latency_hourly: mergeable latency histograms of the calls sent to a model;
-- rollup_tasks: one row per task_id, for cost per outcome. A store made before this
-- migration is backfilled from its traces and outcomes here.

-- The upper bound of the latency bucket holding x (milliseconds): the smallest value with
-- two significant digits that is >= x, so buckets are (…, 1000], (1000, 1100], …,
-- (9900, 10000], (10000, 11000], …: 90 per decade, each at most 10 % of its lower bound
-- wide (1 % at the top of a decade). An SLO with two significant digits (250, 1500, 2000)
-- is a bucket bound, so "latency above the SLO" is a sum of whole buckets.
CREATE MACRO latency_bucket(x) AS
    CASE
        WHEN x IS NULL THEN NULL
        WHEN x <= 0 THEN 0::DOUBLE
        WHEN floor(log10(x)) >= 1
            THEN ceil(x / pow(10, floor(log10(x)) - 1)) * pow(10, floor(log10(x)) - 1)
        -- below 10 ms a power of ten is inexact: round off the error of the product first
        ELSE ceil(round(x * pow(10, 1 - floor(log10(x))), 9)) / pow(10, 1 - floor(log10(x)))
    END;

CREATE TABLE rollup_hourly (
    hour              TIMESTAMP NOT NULL,      -- date_trunc('hour', ts_start)
    environment       VARCHAR,
    key_id            VARCHAR,
    workflow_id       VARCHAR,
    route             VARCHAR,
    provider          VARCHAR,
    request_model     VARCHAR,
    status            VARCHAR NOT NULL,
    error_type        VARCHAR,
    calls             BIGINT NOT NULL,
    cost_usd          DOUBLE NOT NULL,         -- a NULL cost counts as 0, tokens alike
    input_tokens      BIGINT NOT NULL,
    output_tokens     BIGINT NOT NULL,
    cache_read_tokens BIGINT NOT NULL,
    reasoning_tokens  BIGINT NOT NULL,
    latency_calls     BIGINT NOT NULL,         -- calls with a latency_ms
    streamed_calls    BIGINT NOT NULL          -- calls with a ttft_ms
);

-- Calls with status ok, partial or error only (the ones latency_slo reads).
CREATE TABLE rollup_latency_hourly (
    hour          TIMESTAMP NOT NULL,
    route         VARCHAR,
    provider      VARCHAR,
    request_model VARCHAR,
    metric        VARCHAR NOT NULL,            -- latency_ms | ttft_ms
    bucket        DOUBLE NOT NULL,             -- latency_bucket(value): the bucket's upper bound
    calls         BIGINT NOT NULL,
    lowest        DOUBLE NOT NULL,             -- the least and greatest value in the bucket
    highest       DOUBLE NOT NULL
);

-- A task's calls and its outcome. A task whose outcome came before any of its calls has a
-- row with calls = 0 and no first_call_at, so it is in no cohort until a call lands.
CREATE TABLE rollup_tasks (
    task_id                VARCHAR PRIMARY KEY,
    first_call_at          TIMESTAMP,
    calls                  BIGINT NOT NULL,
    judge_calls            BIGINT NOT NULL,
    cost_usd               DOUBLE NOT NULL,
    judge_cost_usd         DOUBLE NOT NULL,
    first_workflow_at      TIMESTAMP,           -- (ts_start, request_id) of the first non-judge
    first_workflow_request VARCHAR,             -- call that names a workflow, and that workflow
    first_workflow_id      VARCHAR,
    outcome_status         VARCHAR,             -- outcomes.status and .workflow_id, kept in step
    outcome_workflow_id    VARCHAR
);

INSERT INTO rollup_hourly BY NAME
SELECT
    date_trunc('hour', ts_start) AS hour,
    environment, key_id, workflow_id, route, provider, request_model, status, error_type,
    count(*) AS calls,
    coalesce(sum(cost_usd), 0) AS cost_usd,
    coalesce(sum(input_tokens), 0)::BIGINT AS input_tokens,
    coalesce(sum(output_tokens), 0)::BIGINT AS output_tokens,
    coalesce(sum(cache_read_tokens), 0)::BIGINT AS cache_read_tokens,
    coalesce(sum(reasoning_tokens), 0)::BIGINT AS reasoning_tokens,
    count(latency_ms) AS latency_calls,
    count(ttft_ms) AS streamed_calls
FROM traces
GROUP BY ALL;

INSERT INTO rollup_latency_hourly BY NAME
SELECT hour, route, provider, request_model, metric, latency_bucket(value) AS bucket,
       count(*) AS calls, min(value) AS lowest, max(value) AS highest
FROM (
    SELECT date_trunc('hour', ts_start) AS hour, route, provider, request_model,
           'latency_ms' AS metric, latency_ms AS value
    FROM traces WHERE status IN ('ok', 'partial', 'error') AND latency_ms IS NOT NULL
    UNION ALL
    SELECT date_trunc('hour', ts_start), route, provider, request_model, 'ttft_ms', ttft_ms
    FROM traces WHERE status IN ('ok', 'partial', 'error') AND ttft_ms IS NOT NULL
)
GROUP BY ALL;

INSERT INTO rollup_tasks BY NAME
SELECT
    task_id,
    min(ts_start) AS first_call_at,
    count(*) AS calls,
    count(*) FILTER (WHERE workflow_id = 'fleetdeck-judge') AS judge_calls,
    coalesce(sum(cost_usd), 0) AS cost_usd,
    coalesce(sum(cost_usd) FILTER (WHERE workflow_id = 'fleetdeck-judge'), 0) AS judge_cost_usd,
    min(ts_start) FILTER (WHERE workflow_id IS NOT NULL AND workflow_id <> 'fleetdeck-judge')
        AS first_workflow_at,
    arg_min(request_id, (ts_start, request_id))
        FILTER (WHERE workflow_id IS NOT NULL AND workflow_id <> 'fleetdeck-judge') AS first_workflow_request,
    arg_min(workflow_id, (ts_start, request_id))
        FILTER (WHERE workflow_id IS NOT NULL AND workflow_id <> 'fleetdeck-judge') AS first_workflow_id,
    NULL AS outcome_status,
    NULL AS outcome_workflow_id
FROM traces
WHERE task_id IS NOT NULL
GROUP BY task_id;

INSERT INTO rollup_tasks BY NAME
SELECT task_id, 0 AS calls, 0 AS judge_calls, 0 AS cost_usd, 0 AS judge_cost_usd,
       status AS outcome_status, workflow_id AS outcome_workflow_id
FROM outcomes
ON CONFLICT (task_id) DO UPDATE SET
    outcome_status = excluded.outcome_status,
    outcome_workflow_id = excluded.outcome_workflow_id;
