-- Policies can select namespaces by label (issue 12): the Kubernetes LabelSelector as
-- JSON, NULL when the policy selects by name or glob only.
ALTER TABLE policies ADD COLUMN namespace_selector TEXT;
