-- The outbox revision of each signature's revocation (issue 15), so a verifier that holds
-- the trust bundle of revision R is sent only the revocations after R. Revocations made
-- before this column existed get the current revision: a verifier asking from an older
-- one is sent them again, never left without them.
ALTER TABLE signatures ADD COLUMN revoked_revision BIGINT;
UPDATE signatures SET revoked_revision = (SELECT value FROM counters WHERE name = 'outbox')
    WHERE revoked_at IS NOT NULL;
CREATE INDEX signatures_revoked_revision ON signatures (witness, revoked_revision)
    WHERE revoked_at IS NOT NULL;
