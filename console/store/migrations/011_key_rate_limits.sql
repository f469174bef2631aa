-- 011: a virtual key's own rate limits (NULL: the policy's per-key default, if any).
ALTER TABLE virtual_keys ADD COLUMN requests_per_minute INTEGER;
ALTER TABLE virtual_keys ADD COLUMN tokens_per_minute INTEGER;
ALTER TABLE virtual_keys ADD COLUMN concurrent INTEGER;  -- calls in flight at once
