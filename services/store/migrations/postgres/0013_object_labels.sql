-- Labels on policies and signing rules (issue 13, policy as code): `signet apply` marks
-- what it owns with `signet.dev/owner`, so `--prune` deletes only its own. JSON objects.
ALTER TABLE policies ADD COLUMN labels TEXT NOT NULL DEFAULT '{}';
ALTER TABLE signing_rules ADD COLUMN labels TEXT NOT NULL DEFAULT '{}';
