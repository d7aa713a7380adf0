-- nuage metadata, schema 7 (PostgreSQL). Keep in step with ../sqlite/0007_quota_and_chunk_owners.sql.
-- Quotas count stored bytes, and chunks are referenced per account.
--
-- What a version is charged against its account's quota: the stored size of its distinct
-- chunks (after compression and encryption). `accounts.used_bytes` is the sum over kept
-- versions. Versions of before this schema keep the plaintext size they were charged.
ALTER TABLE versions ADD COLUMN charged BIGINT NOT NULL DEFAULT 0;
UPDATE versions SET charged = size;
-- The chunks an account has proven it holds: it sent their bytes (checked against the
-- address, and for a normal bucket opened with the key it gave), or the server sealed them
-- for it. An account may skip sending only a chunk it has a row for here. `plain_len` and
-- `key_hash` (BLAKE3 of the chunk key) are what the server learnt when it opened the chunk;
-- NULL for end-to-end chunks, which it cannot open. The row goes when the chunk leaves the
-- index.
CREATE TABLE chunk_owners (
    account_id BIGINT NOT NULL,
    address BYTEA NOT NULL,
    plain_len BIGINT,
    key_hash BYTEA,
    PRIMARY KEY (account_id, address)
);
CREATE INDEX chunk_owners_by_address ON chunk_owners (address);
-- Quota held by uploads under way, before their bytes reach a provider: a simple upload's
-- holder is the one of its chunk leases, a smart upload's is its session id. A write
-- checks `used_bytes` plus every live hold of the account against the quota; the commit
-- turns its hold into `used_bytes`; a hold past `expires_at` counts for nothing.
CREATE TABLE quota_holds (
    holder TEXT PRIMARY KEY,
    account_id BIGINT NOT NULL,
    bytes BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX quota_holds_by_account ON quota_holds (account_id);
-- A smart upload: the number its chunk grants carry (a random 63-bit integer), and the
-- totals of what it declared, which are bounded.
ALTER TABLE upload_sessions ADD COLUMN scope BIGINT;
CREATE UNIQUE INDEX upload_sessions_by_scope ON upload_sessions (scope);
ALTER TABLE upload_sessions ADD COLUMN declared_bytes BIGINT NOT NULL DEFAULT 0;
ALTER TABLE upload_sessions ADD COLUMN declared_count BIGINT NOT NULL DEFAULT 0;
-- A declared chunk whose bytes reached the server in this session (`sent` 1), with what
-- opening it told (NULL for end-to-end chunks); `sent` 2: its room is held for a presigned
-- URL, its bytes go straight to a provider.
ALTER TABLE upload_session_chunks ADD COLUMN sent BIGINT NOT NULL DEFAULT 0;
ALTER TABLE upload_session_chunks ADD COLUMN plain_len BIGINT;
ALTER TABLE upload_session_chunks ADD COLUMN key_hash BYTEA;
-- Chunk objects the collector found on a provider that the index does not know, since when,
-- per provider (a provider that cannot be listed for a while keeps its own sightings).
-- A stray is deleted only once it has been seen for the grace period: its age is not known
-- otherwise (a provider's listing does not say it), and an object the index does not know
-- may be a write in flight that no lease names yet. A sighting not renewed by a pass goes.
CREATE TABLE stray_sightings (
    provider TEXT NOT NULL,
    address BYTEA NOT NULL,
    first_seen BIGINT NOT NULL,
    last_seen BIGINT NOT NULL,
    PRIMARY KEY (provider, address)
);
CREATE INDEX stray_sightings_by_address ON stray_sightings (address);
-- Password attempts per subject (`share:<id>` for a share link, `login:<hash of the name>`
-- for a login), counted before the password is checked, so that every server of a
-- deployment sees the same count: after 5 failures in a row an attempt waits until
-- `blocked_until` (5 s, doubling up to 5 min), and at most 2 are checked at once. An
-- attempt in flight for longer than 30 s (its server died) no longer counts as one.
CREATE TABLE password_attempts (
    subject TEXT PRIMARY KEY,
    failures BIGINT NOT NULL,
    in_flight BIGINT NOT NULL,
    blocked_until BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
