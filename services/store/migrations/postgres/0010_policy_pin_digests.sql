-- Digest pinning (review M7): /mutate rewrites verified tags on Pods to tag@digest.
-- Existing policies keep today's behaviour; the API turns it on for new ones.
ALTER TABLE policies ADD COLUMN pin_digests INTEGER NOT NULL DEFAULT 0;
