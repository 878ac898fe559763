-- Revoked signatures, PostgreSQL dialect (the same in
-- migrations/sqlite/0005_signature_revocation.sql). A revoked signature keeps its row (and
-- its layer in the registry); trust bundles list it so that verifiers refuse it, and the
-- signer does not sign the image again with the same witness.
ALTER TABLE signatures ADD COLUMN revoked_at BIGINT;
ALTER TABLE signatures ADD COLUMN revoked_by TEXT;
ALTER TABLE signatures ADD COLUMN revoked_reason TEXT;
CREATE INDEX signatures_revoked ON signatures (witness, revoked_at);
