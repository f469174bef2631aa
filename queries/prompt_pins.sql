-- prompt_pins: The version pinned for each prompt, from the audit log's prompt.pin entries.
-- The latest prompt.pin entry of a prompt (subject `prompt:<name>@<version>`) decides. A
-- request naming a prompt without a version gets the pinned one (the latest added when
-- none is pinned). The gateway loads this at start, so a pin survives a restart.
-- users: prompt registry, fleetdeck prompts list, fleetdeck query --name prompt_pins
WITH pins AS (
    SELECT
        regexp_extract(subject, '^prompt:(.+)@([^@]+)$', 1) AS name,
        regexp_extract(subject, '^prompt:(.+)@([^@]+)$', 2) AS version,
        actor,
        ts,
        row_number() OVER (PARTITION BY regexp_extract(subject, '^prompt:(.+)@([^@]+)$', 1) ORDER BY seq DESC)
            AS newest
    FROM audit_log
    WHERE action = 'prompt.pin'
)

SELECT name, version, actor AS pinned_by, ts AS pinned_at
FROM pins
WHERE newest = 1 AND name <> ''
ORDER BY name
