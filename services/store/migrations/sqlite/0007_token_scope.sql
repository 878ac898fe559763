-- Signer token scopes, SQLite dialect (the same in
-- migrations/postgres/0007_token_scope.sql). A JSON array of globs over
-- registry/repository; empty: the token may sign any repository, as before. Numbered 0007
-- to leave 0006 to a migration written in parallel.
ALTER TABLE api_tokens ADD COLUMN scope TEXT NOT NULL DEFAULT '[]';
