-- One rate shared by every signer replica (issue 15): per key (a witness's KMS quota),
-- the theoretical arrival time of the next call (GCRA), in microseconds since the epoch.
CREATE TABLE rate_slots (
    rate_key TEXT PRIMARY KEY,
    tat_us BIGINT NOT NULL
);
