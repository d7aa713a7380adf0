-- nuage metadata, schema 1 (SQLite). Keep in step with ../postgres/0001_init.sql.
-- Times are Unix milliseconds; ids of versions are public and never reused (AUTOINCREMENT).
CREATE TABLE accounts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    password_hash TEXT,
    convergence_secret BLOB NOT NULL,
    quota_bytes BIGINT,
    used_bytes BIGINT NOT NULL DEFAULT 0,
    change_seq BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);
CREATE TABLE devices (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id BIGINT NOT NULL REFERENCES accounts (id),
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (account_id, name)
);
CREATE TABLE tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id BIGINT NOT NULL REFERENCES accounts (id),
    device_id BIGINT REFERENCES devices (id),
    token_hash BLOB NOT NULL UNIQUE,
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    revoked_at BIGINT
);
CREATE TABLE providers (
    name TEXT PRIMARY KEY,
    scheme TEXT NOT NULL,
    region TEXT,
    state TEXT NOT NULL,
    weight BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE TABLE buckets (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id BIGINT NOT NULL REFERENCES accounts (id),
    name TEXT NOT NULL,
    replicas BIGINT NOT NULL,
    write_quorum BIGINT NOT NULL,
    keep_versions BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (account_id, name)
);
CREATE TABLE objects (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    bucket_id BIGINT NOT NULL REFERENCES buckets (id),
    key TEXT NOT NULL,
    head_version BIGINT,
    live BIGINT NOT NULL DEFAULT 0,
    UNIQUE (bucket_id, key)
);
CREATE TABLE versions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    object_id BIGINT NOT NULL REFERENCES objects (id),
    tombstone BIGINT NOT NULL,
    size BIGINT NOT NULL,
    etag BLOB,
    content_type TEXT,
    manifest BLOB,
    created_at BIGINT NOT NULL
);
CREATE INDEX versions_by_object ON versions (object_id, id);
CREATE TABLE chunks (
    address BLOB PRIMARY KEY,
    stored_size BIGINT NOT NULL,
    refcount BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    unreferenced_since BIGINT
);
CREATE TABLE placements (
    address BLOB NOT NULL REFERENCES chunks (address),
    provider TEXT NOT NULL,
    state TEXT NOT NULL,
    verified_at BIGINT,
    PRIMARY KEY (address, provider)
);
CREATE TABLE uploads (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id BIGINT NOT NULL REFERENCES accounts (id),
    idempotency_key TEXT NOT NULL,
    bucket_id BIGINT NOT NULL,
    key TEXT NOT NULL,
    version_id BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (account_id, idempotency_key)
);
CREATE TABLE changes (
    account_id BIGINT NOT NULL REFERENCES accounts (id),
    seq BIGINT NOT NULL,
    kind TEXT NOT NULL,
    bucket TEXT NOT NULL,
    key TEXT,
    version_id BIGINT,
    at BIGINT NOT NULL,
    PRIMARY KEY (account_id, seq)
);
