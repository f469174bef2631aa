-- prompt_lineage: Where each optimized prompt version came from, from its prompt.added audit entry.
-- `fleetdeck prompts optimize` adds the version it found with its lineage (parent version,
-- scores on the train and held-out splits, the optimizer's reasoning, the search's task id)
-- in the entry's payload; versions added by hand have none. The registry loads this at start.
-- users: prompt registry (fleetdeck prompts list), fleetdeck query --name prompt_lineage
SELECT
    regexp_extract(subject, '^prompt:(.+)@([^@]+)$', 1) AS name,
    regexp_extract(subject, '^prompt:(.+)@([^@]+)$', 2) AS version,
    CAST(json_extract(payload, '$.lineage') AS VARCHAR) AS lineage,
    actor,
    ts
FROM audit_log
WHERE action = 'prompt.added' AND json_extract(payload, '$.lineage') IS NOT NULL
ORDER BY seq
