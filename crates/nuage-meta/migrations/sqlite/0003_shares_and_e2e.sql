-- nuage metadata, schema 3 (SQLite). Keep in step with ../postgres/0003_shares_and_e2e.sql.
-- An end-to-end bucket records the id of the content key its manifests are sealed with;
-- NULL for a normal bucket.
ALTER TABLE buckets ADD COLUMN e2e_key_id BLOB;
-- A bucket whose devices may send chunks straight to a provider (presigned URLs).
ALTER TABLE buckets ADD COLUMN direct_upload BIGINT NOT NULL DEFAULT 0;
-- Share links. The token is only stored hashed; a share points at one version.
CREATE TABLE shares (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id BIGINT NOT NULL REFERENCES accounts (id),
    token_hash BLOB NOT NULL UNIQUE,
    bucket_id BIGINT NOT NULL REFERENCES buckets (id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    version_id BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    max_downloads BIGINT,
    downloads BIGINT NOT NULL DEFAULT 0,
    password_hash TEXT,
    revoked_at BIGINT
);
CREATE INDEX shares_by_account ON shares (account_id, id);
