-- nuage metadata, schema 11 (PostgreSQL). Keep in step with ../sqlite/0011_multipart_uploads.sql.
-- S3 multipart uploads between their start and their completion or abort. id: `mp_` + 32
-- hex, also the holder of the chunk leases and of the quota hold its parts took (see
-- chunk_leases, quota_holds); content_type and attrs: what the version will keep besides
-- its content (attrs as the object service writes it). An upload past expires_at can no
-- longer take parts or complete; the collector's housekeeping forgets it.
CREATE TABLE multipart_uploads (
    id TEXT PRIMARY KEY,
    account_id BIGINT NOT NULL,
    bucket_id BIGINT NOT NULL,
    key TEXT COLLATE "C" NOT NULL,
    content_type TEXT,
    attrs TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX multipart_uploads_by_key ON multipart_uploads (bucket_id, key, id);
CREATE INDEX multipart_uploads_by_expiry ON multipart_uploads (expires_at);
-- One part, stored and durable (a part sent again under its number replaces the row).
-- manifest: the part's chunks as a manifest of version 1, whose hash is the part's BLAKE3;
-- chunk_refs: the stored size, placements and opening of each distinct chunk, for the
-- commit (nuage-meta's encoding); md5: the part's MD5 (its S3 entity tag); checksums: the
-- ones computed as it streamed (JSON, the object service's).
CREATE TABLE multipart_parts (
    upload_id TEXT NOT NULL,
    number BIGINT NOT NULL,
    size BIGINT NOT NULL,
    md5 BYTEA NOT NULL,
    checksums TEXT,
    manifest BYTEA NOT NULL,
    chunk_refs BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (upload_id, number)
);
