-- Security policies and the admission decisions verifiers report, SQLite dialect.
-- migrations/postgres/0003_policies.sql is the same schema; they differ only in the id column.

-- Binds witnesses to a cluster and namespace. Witness names are a JSON array rather than
-- a join table: a policy is always read and replaced whole, and the store checks that
-- every named witness exists in the transaction that writes the policy (witnesses are
-- never deleted, only revoked).
CREATE TABLE policies (
    name              TEXT PRIMARY KEY NOT NULL,
    cluster           TEXT NOT NULL,
    -- An exact namespace or a glob.
    namespace         TEXT NOT NULL,
    -- JSON array of witness names.
    witnesses         TEXT NOT NULL,
    -- N of the M witnesses must have signed.
    require_count     BIGINT NOT NULL,
    mode              TEXT NOT NULL,
    -- 0 or 1; policies start disabled.
    enabled           BIGINT NOT NULL,
    -- JSON array of image globs that need no signature.
    exemptions        TEXT NOT NULL,
    require_digest    BIGINT NOT NULL,
    allow_break_glass BIGINT NOT NULL,
    note              TEXT NOT NULL,
    created_at        BIGINT NOT NULL,
    -- Strictly increasing per policy: updates are checked against it (optimistic locking).
    updated_at        BIGINT NOT NULL
);
CREATE INDEX policies_by_cluster ON policies (cluster, name);

-- What verifiers decided, one row per workload and policy, in every mode.
CREATE TABLE admission_decisions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          BIGINT NOT NULL,
    received_at BIGINT NOT NULL,
    cluster     TEXT NOT NULL,
    uid         TEXT NOT NULL,
    namespace   TEXT NOT NULL,
    kind        TEXT NOT NULL,
    name        TEXT NOT NULL,
    operation   TEXT NOT NULL,
    policy      TEXT NOT NULL,
    mode        TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    break_glass TEXT,
    -- JSON AdmissionDecision, images and reasons included.
    decision    TEXT NOT NULL,
    -- A verifier re-sending a batch whose answer it lost does not count twice.
    CONSTRAINT admission_decisions_once UNIQUE (cluster, uid, policy)
);
CREATE INDEX admission_decisions_by_policy ON admission_decisions (policy, at);
CREATE INDEX admission_decisions_by_at ON admission_decisions (at);
