-- What runs: the containers each cluster's verifier reports running, with their standing
-- under the cluster's policies (issue 12). The same in both dialects.

-- One row per cluster that reported an inventory: when it last did, and the full sync in
-- progress or last completed (rows a completed sync did not mention are gone).
CREATE TABLE inventory_clusters (
    cluster     TEXT PRIMARY KEY,
    reported_at BIGINT NOT NULL,
    sync_id     TEXT,
    synced_at   BIGINT
);

CREATE TABLE running_containers (
    cluster      TEXT NOT NULL,
    pod_uid      TEXT NOT NULL,
    container    TEXT NOT NULL,
    namespace    TEXT NOT NULL,
    pod          TEXT NOT NULL,
    image        TEXT NOT NULL,
    digest       TEXT,
    standing     TEXT NOT NULL,
    -- JSON RunningContainer, as the verifier reported it.
    record       TEXT NOT NULL,
    updated_at   BIGINT NOT NULL,
    -- The sync that last mentioned the row (or the one in progress when a change came).
    sync_id      TEXT,
    PRIMARY KEY (cluster, pod_uid, container)
);
CREATE INDEX running_containers_by_namespace ON running_containers (cluster, namespace);
CREATE INDEX running_containers_by_digest ON running_containers (digest);
CREATE INDEX running_containers_by_standing ON running_containers (standing);
