-- 012: the session (a user's conversation) a call belongs to: X-Fleetdeck-Session, or the
-- conversation id the request's metadata carries (OpenTelemetry's gen_ai.conversation.id).
ALTER TABLE traces ADD COLUMN session_id VARCHAR;
