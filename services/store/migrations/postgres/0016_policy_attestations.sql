-- Attestations a policy requires (issue 14): a JSON array of {type, conditions}.
ALTER TABLE policies ADD COLUMN attestations TEXT NOT NULL DEFAULT '[]';
