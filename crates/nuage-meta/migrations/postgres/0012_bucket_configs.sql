-- nuage metadata, schema 12 (PostgreSQL). Keep in step with ../sqlite/0012_bucket_configs.sql.
-- A bucket's configurations that S3 sets as documents: kind 'cors' (its CORS rules), kind
-- 'lifecycle' (its lifecycle rules); body: the object service's JSON of them. Deleted with
-- the bucket.
CREATE TABLE bucket_configs (
    bucket_id BIGINT NOT NULL REFERENCES buckets (id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    body TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (bucket_id, kind)
);
-- A browser's preflight names a bucket with no account: found by its name alone.
CREATE INDEX buckets_by_name ON buckets (name);
