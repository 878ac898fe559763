-- Attestations (issue 14): in-toto Statements signet signed as DSSE envelopes and
-- attached as `cosign attest` does. One record per image, witness and statement: the
-- same predicate attested twice is one record; another predicate of the same type is
-- another record.
CREATE TABLE attestations (
    id               TEXT PRIMARY KEY NOT NULL,
    repository       TEXT NOT NULL,
    digest           TEXT NOT NULL,
    witness          TEXT NOT NULL REFERENCES witnesses (name),
    predicate_type   TEXT NOT NULL,
    statement_digest TEXT NOT NULL,
    key_version      TEXT NOT NULL,
    key_fingerprint  TEXT NOT NULL,
    algorithm        TEXT NOT NULL,
    statement        BLOB NOT NULL,
    signature        BLOB NOT NULL,
    artifact         TEXT NOT NULL,
    job_id           TEXT REFERENCES jobs (id),
    created_at       BIGINT NOT NULL,
    CONSTRAINT attestations_one_per_statement UNIQUE (repository, digest, witness, statement_digest)
);
CREATE INDEX attestations_by_digest ON attestations (digest);
CREATE INDEX attestations_by_created ON attestations (created_at);
