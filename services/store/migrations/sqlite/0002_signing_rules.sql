-- Signing rules and webhook delivery ids, SQLite dialect. migrations/postgres/0002_signing_rules.sql
-- is the same schema; these tables use no dialect-specific types.

-- Which pushed repositories are signed automatically, and by which witness.
CREATE TABLE signing_rules (
    name         TEXT PRIMARY KEY NOT NULL,
    -- JSON array of globs over registry/repository.
    repositories TEXT NOT NULL,
    -- A glob over the tag.
    tag_pattern  TEXT NOT NULL,
    witness      TEXT NOT NULL REFERENCES witnesses (name),
    -- 0 or 1.
    enabled      BIGINT NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);

-- Delivery ids of HMAC-signed webhooks seen within the replay window: a repeat is refused.
-- Kept in the store rather than in memory so that every gateway replica, and a restarted
-- one, refuses the same replay.
CREATE TABLE webhook_deliveries (
    receiver    TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    seen_at     BIGINT NOT NULL,
    PRIMARY KEY (receiver, delivery_id)
);
CREATE INDEX webhook_deliveries_by_seen ON webhook_deliveries (receiver, seen_at);
