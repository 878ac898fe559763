-- How the signatures a signing rule asks for are attached (issue 14): `cosign`, `bundle`
-- or `both`, instead of the witness's own format; NULL keeps the witness's.
ALTER TABLE signing_rules ADD COLUMN format TEXT;
