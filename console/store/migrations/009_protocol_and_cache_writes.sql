-- 009: the wire protocol a call arrived in, and the prompt tokens written to a provider's cache.

-- protocol: chat_completions | completions | embeddings | responses | messages | mcp
-- (NULL for requests that call no model: the model list, outcomes, unknown paths).
ALTER TABLE traces ADD COLUMN protocol VARCHAR;
-- Anthropic's cache_creation_input_tokens: priced at the cache-write rate, not as input.
ALTER TABLE traces ADD COLUMN cache_write_tokens INTEGER;
