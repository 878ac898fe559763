-- Token cluster and lifetime, SQLite dialect (the same in migrations/postgres/0006_token_cluster_expiry.sql).
-- cluster: the one cluster a verifier token reads the trust bundle of and reports
-- decisions for; verifier tokens made before this migration have none and are refused by
-- those routes until replaced (docs/release-notes.md). expires_at: refused from then on
-- (NULL: never). last_used_at: when a request last authenticated with it (updated at
-- most once a minute).
ALTER TABLE api_tokens ADD COLUMN cluster TEXT;
ALTER TABLE api_tokens ADD COLUMN expires_at BIGINT;
ALTER TABLE api_tokens ADD COLUMN last_used_at BIGINT;
