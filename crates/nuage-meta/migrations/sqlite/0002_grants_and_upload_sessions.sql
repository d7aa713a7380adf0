-- Ed25519 keys that sign grants. The newest unretired key signs; retired keys still verify
-- until every grant they signed has expired.
CREATE TABLE grant_keys (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    seed BLOB NOT NULL,
    public_key BLOB NOT NULL,
    created_at BIGINT NOT NULL,
    retired_at BIGINT
);
-- A smart upload between its start and its commit.
CREATE TABLE upload_sessions (
    id TEXT PRIMARY KEY,
    account_id BIGINT NOT NULL REFERENCES accounts (id),
    bucket_id BIGINT NOT NULL REFERENCES buckets (id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX upload_sessions_expiry ON upload_sessions (expires_at);
-- The chunks a session declared, batch by batch, with their stored sizes.
CREATE TABLE upload_session_chunks (
    session_id TEXT NOT NULL REFERENCES upload_sessions (id) ON DELETE CASCADE,
    address BLOB NOT NULL,
    stored_size BIGINT NOT NULL,
    PRIMARY KEY (session_id, address)
);
