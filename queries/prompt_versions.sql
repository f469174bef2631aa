-- prompt_versions: Every version of every prompt in the registry, oldest first per prompt.
-- A version is named v1, v2, … in the order it was added; `hash` is the sha256 of its
-- template, so adding the same text again adds nothing.
-- users: prompt registry, fleetdeck prompts list, fleetdeck query --name prompt_versions
SELECT name, version, hash, created_at, author, template
FROM prompts
ORDER BY name, created_at, version
