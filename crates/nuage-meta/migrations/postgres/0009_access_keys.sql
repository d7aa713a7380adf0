-- nuage metadata, schema 9 (PostgreSQL). Keep in step with ../sqlite/0009_access_keys.sql.
-- S3 access keys (`nuage admin key create`): SigV4 needs the secret itself on the server, so
-- it is kept sealed (AES-256-GCM under the server's key for access keys, which is not in the
-- database: `access_key_file`); a token, by contrast, is kept as a hash. A key may be limited
-- to one bucket of its account (by name) and to reads. A revoked key keeps its row, so that
-- its id is never handed out again.
CREATE TABLE access_keys (
    id TEXT PRIMARY KEY,
    account_id BIGINT NOT NULL REFERENCES accounts (id),
    name TEXT NOT NULL,
    bucket TEXT,
    read_only BIGINT NOT NULL,
    secret_sealed BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX access_keys_account ON access_keys (account_id);
