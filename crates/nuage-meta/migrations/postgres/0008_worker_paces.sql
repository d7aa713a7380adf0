-- nuage metadata, schema 8 (PostgreSQL). Keep in step with ../sqlite/0008_worker_paces.sql.
-- Paces an operator set while servers run (`nuage admin pace WORKER RATE`), by worker
-- name (`scrub`, `repair`, `gc`, `migrate`): they replace the configured
-- `[workers] *_per_sec` of every server of the deployment, which read this table every two
-- seconds. A worker without a row runs at its configured pace (`nuage admin pace WORKER
-- default` deletes the row). `rate` is bytes per second (deletions per second for `gc`);
-- 0 is unpaced.
CREATE TABLE worker_paces (
    name TEXT PRIMARY KEY,
    rate BIGINT NOT NULL,
    set_at BIGINT NOT NULL
);
