-- Console sessions (issue 13): a browser signs in with an API token and gets a session of
-- its own, stored as a short-lived token whose `session_of` names the token it came from.
-- Revoking that token revokes its sessions in the same transaction.
ALTER TABLE api_tokens ADD COLUMN session_of TEXT NULL;
CREATE INDEX api_tokens_session_of ON api_tokens (session_of);
