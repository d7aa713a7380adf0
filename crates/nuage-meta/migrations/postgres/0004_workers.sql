-- nuage metadata, schema 4 (PostgreSQL). Keep in step with ../sqlite/0004_workers.sql.
-- Background workers (scrub, repair): one row each. The cursor is the last chunk address
-- done in the current pass (NULL: the next pass starts from the beginning), saved after
-- every batch, so a restart resumes where the worker stopped.
CREATE TABLE workers (
    name TEXT PRIMARY KEY,
    cursor BYTEA,
    passes BIGINT NOT NULL DEFAULT 0,
    pass_started_at BIGINT,
    last_pass_at BIGINT,
    chunks BIGINT NOT NULL DEFAULT 0,
    bytes BIGINT NOT NULL DEFAULT 0,
    found BIGINT NOT NULL DEFAULT 0,
    last_pass_found BIGINT,
    updated_at BIGINT NOT NULL
);
-- Copies each chunk should have: the most any bucket that referenced it asked for (set at
-- commit). Chunks stored before this schema get the most any bucket asks for, or the copies
-- they have if more: never fewer than their buckets want, at worst a copy too many.
ALTER TABLE chunks ADD COLUMN replicas BIGINT NOT NULL DEFAULT 1;
UPDATE chunks SET replicas = GREATEST(
    (SELECT COUNT(*) FROM placements p WHERE p.address = chunks.address),
    COALESCE((SELECT MAX(replicas) FROM buckets), 1));
CREATE INDEX placements_by_state ON placements (state, provider);
