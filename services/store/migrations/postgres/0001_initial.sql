-- signet store schema, PostgreSQL dialect. migrations/sqlite/0001_initial.sql is the same
-- schema; the two differ only where the dialects do (autoincrement ids, BLOB vs BYTEA,
-- trigger syntax).
--
-- Column types stay within what sqlx's Any driver carries on both backends: timestamps are
-- BIGINT unix milliseconds, flags are BIGINT 0/1 (Any cannot read SQLite's BOOLEAN), JSON
-- and UUIDs are TEXT.

CREATE TABLE witnesses (
    name         TEXT PRIMARY KEY NOT NULL,
    kms_key      TEXT NOT NULL,
    algorithm    TEXT NOT NULL,
    description  TEXT NOT NULL,
    state        TEXT NOT NULL,
    -- JSON array of KeyVersion: a witness is always read and replaced whole.
    key_versions TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);

CREATE TABLE jobs (
    id           TEXT PRIMARY KEY NOT NULL,
    -- JSON SignRequest, the same document POST /v1/sign takes.
    request      TEXT NOT NULL,
    source       TEXT NOT NULL,
    state        TEXT NOT NULL,
    attempts     BIGINT NOT NULL,
    digest       TEXT,
    signature_id TEXT,
    error        TEXT,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);
CREATE INDEX jobs_by_state_created ON jobs (state, created_at);
CREATE INDEX jobs_by_created ON jobs (created_at);

CREATE TABLE signatures (
    id              TEXT PRIMARY KEY NOT NULL,
    repository      TEXT NOT NULL,
    digest          TEXT NOT NULL,
    witness         TEXT NOT NULL REFERENCES witnesses (name),
    key_version     TEXT NOT NULL,
    key_fingerprint TEXT NOT NULL,
    algorithm       TEXT NOT NULL,
    payload         BYTEA NOT NULL,
    signature       BYTEA NOT NULL,
    artifact        TEXT NOT NULL,
    job_id          TEXT REFERENCES jobs (id),
    created_at      BIGINT NOT NULL,
    -- One signature per image and witness; also serves lookups by repository + digest.
    CONSTRAINT signatures_one_per_witness UNIQUE (repository, digest, witness)
);
CREATE INDEX signatures_by_digest ON signatures (digest);
CREATE INDEX signatures_by_witness ON signatures (witness, created_at);
CREATE INDEX signatures_by_created ON signatures (created_at);

CREATE TABLE signing_claims (
    claim_key  TEXT PRIMARY KEY NOT NULL,
    holder     TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE TABLE api_tokens (
    id          TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL UNIQUE,
    role        TEXT NOT NULL,
    -- SHA-256 of the secret; the secret itself is never stored.
    secret_hash BYTEA NOT NULL,
    revoked     BIGINT NOT NULL,
    created_at  BIGINT NOT NULL
);

-- Audit and outbox ids come from these counters, bumped in the writing transaction: the
-- row lock makes ids appear in commit order without gaps, so a reader that resumes
-- "after id N" never skips a row that committed late (a sequence would allow that).
CREATE TABLE counters (
    name  TEXT PRIMARY KEY NOT NULL,
    value BIGINT NOT NULL
);
INSERT INTO counters (name, value) VALUES ('audit', 0), ('outbox', 0);

CREATE TABLE audit_log (
    id      BIGINT PRIMARY KEY NOT NULL,
    at      BIGINT NOT NULL,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    subject TEXT NOT NULL,
    -- JSON
    detail  TEXT NOT NULL
);
CREATE INDEX audit_log_by_subject ON audit_log (subject, id);

-- The audit log is append-only; the store has no API to change it, and these refuse a
-- change made around it.
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only';
END;
$$;
CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

CREATE TABLE outbox (
    id           BIGINT PRIMARY KEY NOT NULL,
    event_type   TEXT NOT NULL,
    subject      TEXT NOT NULL,
    -- JSON
    data         TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    published_at BIGINT
);
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;

-- BIGSERIAL: message ids are ack handles, so an acked (deleted) id must never be reused.
CREATE TABLE queue_messages (
    id           BIGSERIAL PRIMARY KEY,
    queue        TEXT NOT NULL,
    body         BYTEA NOT NULL,
    -- JSON object of string to string
    headers      TEXT NOT NULL,
    deliveries   BIGINT NOT NULL,
    -- Not before this time: pushed forward by a lease (visibility timeout) or a retry delay.
    available_at BIGINT NOT NULL,
    enqueued_at  BIGINT NOT NULL
);
CREATE INDEX queue_messages_by_queue ON queue_messages (queue, id);

CREATE TABLE queue_dead_letters (
    id          BIGSERIAL PRIMARY KEY,
    message_id  BIGINT NOT NULL,
    queue       TEXT NOT NULL,
    body        BYTEA NOT NULL,
    headers     TEXT NOT NULL,
    deliveries  BIGINT NOT NULL,
    reason      TEXT NOT NULL,
    enqueued_at BIGINT NOT NULL,
    dead_at     BIGINT NOT NULL
);
CREATE INDEX queue_dead_letters_by_queue ON queue_dead_letters (queue, id);
