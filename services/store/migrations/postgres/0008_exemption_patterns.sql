-- Exemptions become image patterns (PostgreSQL dialect; migrations/sqlite/0008 is the same
-- rewrite). Until now an exemption was one glob over the image string in which `*` also
-- matched `/`, so `*.k8s.io/*` covered `attacker.example/x.k8s.io/miner`. Now registry,
-- repository and tag are matched separately, `*` within one path component and `**`
-- across components. Existing exemptions keep what they were written to mean:
--   * a trailing `/*` meant "anything under this prefix": it becomes `/**`;
--   * `*` or `**` alone meant every image: it becomes `**`;
--   * everything else is kept: a `*` in the host now stays within the host, a tag glob
--     (`registry.k8s.io/pause:*`) still matches tags, and a `*` inside a path no longer
--     crosses `/` (narrower: fails closed). docs/release-notes.md says so.
UPDATE policies
SET exemptions = (
    SELECT COALESCE(
        jsonb_agg(
            CASE
                WHEN e.value IN ('*', '**') THEN '**'
                WHEN e.value LIKE '%/**' THEN e.value
                WHEN e.value LIKE '%/*' THEN e.value || '*'
                ELSE e.value
            END
            ORDER BY e.n),
        '[]'::jsonb)::text
    FROM jsonb_array_elements_text(policies.exemptions::jsonb) WITH ORDINALITY AS e(value, n)
)
WHERE exemptions <> '[]';
