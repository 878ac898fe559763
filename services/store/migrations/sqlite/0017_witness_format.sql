-- How a witness's signatures are attached (issue 14): `cosign` (the `.sig` tag),
-- `bundle` (a Sigstore bundle as an OCI 1.1 referrer) or `both`.
ALTER TABLE witnesses ADD COLUMN format TEXT NOT NULL DEFAULT 'cosign';
