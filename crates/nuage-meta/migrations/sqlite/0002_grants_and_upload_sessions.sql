-- Ed25519 keys that sign grants. The newest unretired key signs; retired keys still verify
-- until every grant they signed has expired.
CREATE TABLE grant_keys (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    seed BLOB NOT NULL,
    public_key BLOB NOT NULL,
    created_at BIGINT NOT NULL,
    retired_at BIGINT
);
-- A smart upload between its start (the chunk list) and its commit (the manifest).
-- `chunks` is the declared list: per chunk its address (32 bytes) and stored size (u32 LE).
CREATE TABLE upload_sessions (
    id TEXT PRIMARY KEY,
    account_id BIGINT NOT NULL REFERENCES accounts (id),
    bucket_id BIGINT NOT NULL REFERENCES buckets (id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    chunks BLOB NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX upload_sessions_expiry ON upload_sessions (expires_at);
