-- nuage metadata, schema 10 (PostgreSQL). Keep in step with ../sqlite/0010_object_attributes.sql.
-- What S3 clients expect of an object besides its content. md5: the MD5 of the content, the
-- S3 entity tag of a single PUT (16 bytes); with md5_parts, the MD5 of the parts' MD5s of a
-- multipart upload of that many parts. None for a version written by a smart upload, whose
-- content the server never sees whole (its S3 entity tag is then its BLAKE3). attrs: the
-- version's other attributes as JSON (the content headers, user metadata, the checksums
-- computed as it was written), read and written by the object service only.
ALTER TABLE versions ADD COLUMN md5 BYTEA;
ALTER TABLE versions ADD COLUMN md5_parts BIGINT;
ALTER TABLE versions ADD COLUMN attrs TEXT;
