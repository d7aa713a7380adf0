-- nuage metadata, schema 6 (PostgreSQL). Keep in step with ../sqlite/0006_provider_settings.sql.
-- Providers added at run time (`nuage admin provider add`): their settings (the provider's
-- TOML table as JSON, credentials included) are kept here, where every server of the
-- deployment reads them; providers of the configuration file keep NULL. A provider taken
-- out (`nuage admin provider remove`, only once drained and empty) keeps its row in state
-- 'removed', so that a configuration file still naming it does not bring it back.
ALTER TABLE providers ADD COLUMN settings TEXT;
-- When a lease was first taken (Unix ms): a provider is removed only once no upload that
-- began before it was drained (and so may have written there) can still commit. Leases of
-- before this schema count as old.
ALTER TABLE chunk_leases ADD COLUMN leased_at BIGINT NOT NULL DEFAULT 0;
