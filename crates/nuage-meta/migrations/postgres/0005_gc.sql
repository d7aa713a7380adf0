-- nuage metadata, schema 5 (PostgreSQL). Keep in step with ../sqlite/0005_gc.sql.
-- Garbage collection. A writer leases every chunk it is about to rely on (one it writes, or
-- one it finds already stored) before it relies on it, and the commit that references the
-- chunks drops the lease; the collector never deletes a chunk under a live lease or declared
-- by a live upload session, and drops expired leases (and the declarations of expired
-- sessions) before it looks, so a lease row that exists protects its chunk. `holder` names
-- one upload attempt.
CREATE TABLE chunk_leases (
    address BYTEA NOT NULL,
    holder TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (address, holder)
);
CREATE INDEX chunk_leases_by_holder ON chunk_leases (holder);
CREATE INDEX chunk_leases_by_expiry ON chunk_leases (expires_at);
CREATE INDEX upload_session_chunks_by_address ON upload_session_chunks (address);
-- Chunks the collector is deleting from the providers. A writer that meets one waits until
-- its row is gone (deleted everywhere, or given up) before it writes or trusts the chunk.
CREATE TABLE chunk_deletions (
    address BYTEA PRIMARY KEY,
    started_at BIGINT NOT NULL
);
CREATE INDEX chunks_unreferenced ON chunks (address) WHERE refcount = 0;
-- One collector at a time: the gc worker's row names the process running one, until when.
ALTER TABLE workers ADD COLUMN owner TEXT;
ALTER TABLE workers ADD COLUMN owner_until BIGINT;
