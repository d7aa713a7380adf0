//! Reads: the content of a version, with the conditions and the range of RFC 9110 (which
//! S3 follows too), streamed with a few chunks fetched ahead; listings of a bucket; the
//! versions of a key. Every front calls these; none repeats a rule of them.
//!
//! Memory per download is bounded by [`CHUNKS_AHEAD`] chunks whatever the object size.

use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use nuage_core::{Manifest, ManifestEntry, chunk};
use nuage_meta::{Bucket, EntityTag, EtagCondition, ListEntry, Tags, Version, VersionCursor, VersionEntry};
use nuage_proto::range::{ByteRange, RangeRequest};

use crate::metrics::add;
use crate::names::{ReadKey, stored_key};
use crate::objects::{precondition_failed, refuse_e2e};
use crate::{ErrorKind, Nuage, ServiceError, ServiceResult};

/// Chunks fetched ahead of the one being sent by one download.
pub const CHUNKS_AHEAD: usize = 4;

/// What a page of a listing holds when the caller does not say (also the most it may
/// hold: the metadata store pages by at most 1,000).
pub const LIST_LIMIT: usize = 1000;

/// The conditions of a read (RFC 9110 §13): entity tags are a version's BLAKE3 or its MD5 tag
/// (it answers to both, [`Tags`]), dates whole seconds since the Unix epoch.
#[derive(Debug, Clone, Default)]
pub struct ReadConditions {
    /// The read happens only if the version matches (else `precondition_failed`).
    pub if_match: Option<EtagCondition>,
    /// The content is not sent if the version matches ([`Answer::NotModified`]).
    pub if_none_match: Option<EtagCondition>,
    /// The content is not sent unless the version was made after this date; only without
    /// `if_none_match`.
    pub if_modified_since: Option<i64>,
    /// The read happens only if the version was not made after this date; only without
    /// `if_match`.
    pub if_unmodified_since: Option<i64>,
    /// The range is honoured only if this names the version read.
    pub if_range: Option<IfRange>,
}

/// An `If-Range` validator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfRange {
    /// An entity tag: a strong tag of a version, or `None` for one that can match nothing
    /// here (a weak tag, someone else's).
    Etag(Option<EntityTag>),
    /// A date (`None`: one that could not be read). It names a version only for a read
    /// pinned to that version: two versions of a key made within one second share a date,
    /// so a date is no strong validator of "the current one".
    Date(Option<i64>),
}

/// How to read.
#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    /// This version of the key; none: its current version.
    pub version: Option<i64>,
    /// The conditions.
    pub conditions: ReadConditions,
    /// One range of the content; none: all of it.
    pub range: Option<ByteRange>,
}

/// What a read answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// The version matches `If-None-Match` or was not modified since `If-Modified-Since`:
    /// no content.
    NotModified,
    /// The whole content.
    Full,
    /// Bytes `start..end` of the content.
    Partial {
        /// First byte.
        start: u64,
        /// One past the last byte.
        end: u64,
    },
}

/// A read the conditions allowed: what it answers, and its content, fetched only if
/// [`Read::content`] is called.
#[derive(Debug)]
pub struct Read {
    /// The version read.
    pub version: Version,
    /// Its entity tag (the BLAKE3 of its content).
    pub etag: [u8; 32],
    /// When it was made, in whole seconds (what `Last-Modified` says).
    pub modified: i64,
    /// What to send.
    pub answer: Answer,
    nuage: Arc<Nuage>,
}

impl Read {
    /// The bytes the answer holds, `start..end` of the content.
    pub fn span(&self) -> (u64, u64) {
        match self.answer {
            Answer::NotModified => (0, 0),
            Answer::Full => (0, self.version.size),
            Answer::Partial { start, end } => (start, end),
        }
    }

    /// The lengths of the parts the version was assembled from (a multipart upload of two
    /// parts or more), in the text form of `nuage_core::manifest::layout_to_text`: what a
    /// reader needs to check the content against its hash ([`nuage_core::ContentHasher`]).
    /// None for a version written whole, whose hash is its content's BLAKE3.
    pub async fn layout(&self) -> ServiceResult<Option<String>> {
        if self.version.md5.is_none_or(|m| m.parts.is_none_or(|n| n <= 1)) {
            return Ok(None);
        }
        let manifest = Manifest::decode(&self.nuage.meta.manifest(self.version.id).await?)
            .map_err(|e| ServiceError::internal("stored manifest", e))?;
        let lengths = manifest.part_lengths();
        Ok((!lengths.is_empty()).then(|| nuage_core::manifest::layout_to_text(&lengths)))
    }

    /// The content of [`Read::span`], in order, as it is fetched and opened, with
    /// [`CHUNKS_AHEAD`] chunks ahead. Nothing is read until the stream is polled; a
    /// provider outage is the first item's error, so a front can await that before it
    /// answers.
    pub fn content(self) -> impl Stream<Item = ServiceResult<Bytes>> + Send + 'static {
        let (start, end) = self.span();
        let (nuage, version_id) = (self.nuage, self.version.id);
        let plan = {
            let nuage = nuage.clone();
            async move {
                if start == end {
                    return Ok(Vec::new());
                }
                let manifest = Manifest::decode(&nuage.meta.manifest(version_id).await?)
                    .map_err(|e| ServiceError::internal("stored manifest", e))?;
                Ok::<_, ServiceError>(plan(manifest, start, end))
            }
        };
        futures::stream::once(plan)
            .map_ok(move |plan| {
                let nuage = nuage.clone();
                futures::stream::iter(plan)
                    .map(move |(entry, from, to)| open_part(nuage.clone(), entry, from, to))
                    .buffered(CHUNKS_AHEAD)
            })
            .try_flatten()
    }
}

/// The chunks of `manifest` that hold bytes `start..end`, each with the part of its
/// plaintext that is in the range.
fn plan(manifest: Manifest, start: u64, end: u64) -> Vec<(ManifestEntry, usize, usize)> {
    let mut plan = Vec::new();
    let mut offset = 0u64;
    for e in manifest.entries {
        let len = u64::from(e.plain_len);
        let (from, to) = (start.max(offset), end.min(offset + len));
        if from < to {
            plan.push((e, (from - offset) as usize, (to - offset) as usize));
        }
        offset += len;
        if offset >= end {
            break;
        }
    }
    plan
}

/// Fetches one chunk, opens it, and keeps `from..to` of its plaintext.
async fn open_part(nuage: Arc<Nuage>, entry: ManifestEntry, from: usize, to: usize) -> ServiceResult<Bytes> {
    let read = nuage.store.get(&entry.address, &[]).await?;
    let address = entry.address;
    let plain = tokio::task::spawn_blocking(move || chunk::open(&read.bytes, &entry.key, entry.plain_len))
        .await
        .map_err(|e| ServiceError::internal("decrypting", e))?
        .map_err(|e| ServiceError::internal(&format!("chunk {address}"), e))?;
    add(&nuage.metrics.bytes_out, (to - from) as u64);
    Ok(Bytes::from(plain).slice(from..to))
}

/// Whether a range may be honoured under `If-Range` (RFC 9110 §13.1.5): always without
/// one; with an entity tag, only the version's own; with a date, only exactly the version's
/// (whole seconds), and only for a read `pinned` to that version.
fn range_allowed(if_range: Option<IfRange>, tags: &Tags, modified: i64, pinned: bool) -> bool {
    match if_range {
        None => true,
        Some(IfRange::Etag(tag)) => tag.is_some_and(|t| tags.answers(&t)),
        Some(IfRange::Date(date)) => pinned && date == Some(modified),
    }
}

fn delete_marker() -> ServiceError {
    ServiceError::new(ErrorKind::NotFound, "object_not_found", "this version is a delete marker")
}

/// A page of a listing.
#[derive(Debug, Clone, Default)]
pub struct Page {
    /// The live objects, with their current versions, in key order.
    pub objects: Vec<Version>,
    /// The common prefixes (keys grouped up to the delimiter), in order.
    pub prefixes: Vec<String>,
    /// Where the next page starts, as an opaque token; none on the last page.
    pub next_page_token: Option<String>,
}

/// How to list.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    /// Only keys that begin with this (normalized as keys are).
    pub prefix: String,
    /// Keys that have this after the prefix are grouped into one prefix.
    pub delimiter: Option<String>,
    /// A token of an earlier page: go on from there.
    pub page_token: Option<String>,
    /// At most this many entries (objects and prefixes); 1 to 1,000, [`LIST_LIMIT`] when none.
    pub limit: Option<usize>,
    /// Only keys after this one (S3's `start-after`); a page token takes its place.
    pub start_after: Option<String>,
}

/// How to list versions.
#[derive(Debug, Clone, Default)]
pub struct VersionListOptions {
    /// Only keys that begin with this (normalized as keys are).
    pub prefix: String,
    /// Keys that have this after the prefix are grouped into one prefix.
    pub delimiter: Option<String>,
    /// Start after this key (its versions older than `version_marker` when that is
    /// given; after every key under it when it is a common prefix of this listing).
    pub key_marker: Option<String>,
    /// With `key_marker`: the last version of it already listed.
    pub version_marker: Option<i64>,
    /// At most this many entries; 1 to 1,000, [`LIST_LIMIT`] when none.
    pub limit: Option<usize>,
}

/// A page of a listing of versions.
#[derive(Debug, Clone, Default)]
pub struct VersionPage {
    /// Versions, delete markers included, in key order and newest first within a key,
    /// each with whether it is its key's current version.
    pub versions: Vec<(Version, bool)>,
    /// The common prefixes, in order.
    pub prefixes: Vec<String>,
    /// When more follow: the markers of the next page (the last key or prefix listed, and
    /// the last version of that key listed).
    pub next: Option<(String, Option<i64>)>,
}

/// A prefix, delimiter or marker with a control character, which no key has (and
/// PostgreSQL's text cannot hold U+0000 at all).
fn refuse_control<'a>(texts: impl IntoIterator<Item = Option<&'a String>>) -> ServiceResult<()> {
    if texts.into_iter().flatten().any(|t| t.chars().any(char::is_control)) {
        return Err(ServiceError::invalid(
            "invalid_list_option",
            "a prefix, delimiter or marker holds a control character, which no key has",
        ));
    }
    Ok(())
}

/// Whether `after` is a common prefix of a listing by `prefix` and `delimiter`: the
/// prefix, then one segment up to the delimiter, as a page ends with it.
fn is_common_prefix(after: &str, prefix: &str, delimiter: Option<&str>) -> bool {
    let prefix = nuage_core::key::normalize_prefix(prefix);
    delimiter.is_some_and(|d| {
        after
            .strip_prefix(prefix.as_str())
            .and_then(|rest| rest.strip_suffix(d))
            .is_some_and(|seg| !seg.contains(d))
    })
}

/// Where a listing that starts after `after` begins. No key holds a control character
/// (nuage_core::key), so the first key after `after` is at or after `after` + U+0001 (not
/// U+0000, which PostgreSQL's text cannot hold); but when `after` is a
/// common prefix of this listing (the prefix, then one segment up to the delimiter, as a
/// page ends with it), the listing goes on after every key under it, as S3 does with a
/// marker that is a common prefix.
fn first_after(after: &str, options: &ListOptions) -> String {
    if is_common_prefix(after, &options.prefix, options.delimiter.as_deref()) {
        format!("{after}\u{10FFFF}")
    } else {
        format!("{after}\u{1}")
    }
}

impl Nuage {
    /// Reads `key` of the caller's `bucket` (a normal bucket: the server opens the
    /// chunks), its current version or `options.version`, under the conditions and range
    /// of `options` (see [`Nuage::read_version`]).
    pub async fn read(
        self: &Arc<Self>,
        account_id: i64,
        bucket: &str,
        key: ReadKey,
        options: ReadOptions,
    ) -> ServiceResult<Read> {
        let bucket = self.meta.bucket(account_id, bucket).await?;
        let key = stored_key(&self.meta, &bucket, key).await?;
        refuse_e2e(&bucket)?;
        let version = self.version_or_head(&bucket, &key, options.version).await?;
        self.read_version(version, options.version.is_some(), &options.conditions, options.range)
    }

    /// Reads `version` under `conditions` and `range`, in the order RFC 9110 §13.2.2 gives:
    /// If-Match, else If-Unmodified-Since (`precondition_failed`); then If-None-Match, else
    /// If-Modified-Since ([`Answer::NotModified`]); then the range, if If-Range (when
    /// given) names this version, else the whole content, so that a resumed download never
    /// splices two versions. `pinned`: the read names this version (by id, or a share link
    /// does), so a date in If-Range may name it. Dates compare at whole seconds.
    pub fn read_version(
        self: &Arc<Self>,
        version: Version,
        pinned: bool,
        conditions: &ReadConditions,
        range: Option<ByteRange>,
    ) -> ServiceResult<Read> {
        let Some(tags) = version.tags() else {
            return Err(delete_marker());
        };
        let etag = tags.hash;
        let modified = version.created_at.max(0) / 1000;
        match &conditions.if_match {
            Some(c) if !c.matches(Some(&tags)) => return Err(precondition_failed()),
            Some(_) => {}
            None if conditions.if_unmodified_since.is_some_and(|since| modified > since) => {
                return Err(precondition_failed());
            }
            None => {}
        }
        let not_modified = match &conditions.if_none_match {
            Some(c) => c.matches(Some(&tags)),
            None => conditions.if_modified_since.is_some_and(|since| modified <= since),
        };
        let same_version = range_allowed(conditions.if_range, &tags, modified, pinned);
        let size = version.size;
        let answer = if not_modified {
            Answer::NotModified
        } else {
            match range.filter(|_| same_version).map_or(RangeRequest::Full, |r| r.resolve(size)) {
                RangeRequest::Full => Answer::Full,
                RangeRequest::Partial { start, end } => Answer::Partial { start, end },
                RangeRequest::Unsatisfiable => {
                    return Err(ServiceError::new(
                        ErrorKind::RangeNotSatisfiable,
                        "range_not_satisfiable",
                        format!("the range lies outside the object ({size} bytes)"),
                    )
                    .with_size(size));
                }
            }
        };
        Ok(Read { version, etag, modified, answer, nuage: self.clone() })
    }

    /// The version `id` of `key`, or (`None`) its current version.
    pub async fn version_or_head(
        &self,
        bucket: &Bucket,
        key: &str,
        id: Option<i64>,
    ) -> ServiceResult<Version> {
        Ok(match id {
            Some(id) => self.meta.version(bucket, key, id).await?,
            None => self.meta.head(bucket, key).await?,
        })
    }

    /// As [`Nuage::version_or_head`], refusing a delete marker (`object_not_found`).
    pub async fn live_version(&self, bucket: &Bucket, key: &str, id: Option<i64>) -> ServiceResult<Version> {
        let version = self.version_or_head(bucket, key, id).await?;
        if version.tombstone {
            return Err(delete_marker());
        }
        Ok(version)
    }

    /// One page of the live objects of the caller's `bucket`, in key order.
    pub async fn list(&self, account_id: i64, bucket: &str, options: &ListOptions) -> ServiceResult<Page> {
        let bucket = self.meta.bucket(account_id, bucket).await?;
        refuse_control([Some(&options.prefix), options.delimiter.as_ref(), options.start_after.as_ref()])?;
        let start = match &options.page_token {
            Some(t) => Some(
                hex::decode(t)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .filter(|k| !k.chars().any(char::is_control))
                    .ok_or_else(|| {
                        ServiceError::invalid("invalid_page_token", "page_token was not made by this server")
                    })?,
            ),
            None => options.start_after.as_deref().map(|after| first_after(after, options)),
        };
        let listing = self
            .meta
            .list_objects(
                &bucket,
                &nuage_core::key::normalize_prefix(&options.prefix),
                options.delimiter.as_deref(),
                start.as_deref(),
                options.limit.unwrap_or(LIST_LIMIT),
            )
            .await?;
        let mut page = Page { next_page_token: listing.next.map(hex::encode), ..Page::default() };
        for e in listing.entries {
            match e {
                ListEntry::Object(v) => page.objects.push(v),
                ListEntry::Prefix(p) => page.prefixes.push(p),
            }
        }
        Ok(page)
    }

    /// One page of every kept version of the keys of the caller's `bucket`, delete markers
    /// included: keys in order, each key's versions newest first.
    pub async fn list_versions(
        &self,
        account_id: i64,
        bucket: &str,
        options: &VersionListOptions,
    ) -> ServiceResult<VersionPage> {
        let bucket = self.meta.bucket(account_id, bucket).await?;
        refuse_control([Some(&options.prefix), options.delimiter.as_ref(), options.key_marker.as_ref()])?;
        let delimiter = options.delimiter.as_deref();
        let start = match (&options.key_marker, options.version_marker) {
            (None, Some(_)) => {
                return Err(ServiceError::invalid(
                    "invalid_list_option",
                    "a version marker needs the key marker it belongs to",
                ));
            }
            (None, None) => None,
            (Some(key), Some(below)) => Some(VersionCursor { key: key.clone(), below }),
            (Some(key), None) if is_common_prefix(key, &options.prefix, delimiter) => {
                Some(VersionCursor { key: format!("{key}\u{10FFFF}"), below: i64::MAX })
            }
            (Some(key), None) => Some(VersionCursor { key: key.clone(), below: 0 }),
        };
        let listing = self
            .meta
            .list_versions(
                &bucket,
                &nuage_core::key::normalize_prefix(&options.prefix),
                delimiter,
                start,
                options.limit.unwrap_or(LIST_LIMIT),
            )
            .await?;
        let mut page = VersionPage { next: listing.next, ..VersionPage::default() };
        for e in listing.entries {
            match e {
                VersionEntry::Version { version, latest } => page.versions.push((version, latest)),
                VersionEntry::Prefix(p) => page.prefixes.push(p),
            }
        }
        Ok(page)
    }

    /// Every kept version of `key`, newest first, delete markers included
    /// (`object_not_found` if it has none).
    pub async fn versions(&self, account_id: i64, bucket: &str, key: ReadKey) -> ServiceResult<Vec<Version>> {
        let bucket = self.meta.bucket(account_id, bucket).await?;
        let key = stored_key(&self.meta, &bucket, key).await?;
        let versions = self.meta.versions(&bucket, &key).await?;
        if versions.is_empty() {
            return Err(nuage_meta::Error::ObjectNotFound.into());
        }
        Ok(versions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// If-Range lets a range through for the version's own strong tag only, or its
        /// exact date on a pinned read; never for a tag that cannot match (weak, someone
        /// else's), another version's tag, another date, a date that could not be read, or
        /// a date on an unpinned read.
        #[test]
        fn if_range_names_one_version(
            mine in any::<[u8; 32]>(),
            other in any::<[u8; 32]>(),
            modified in 0i64..4_000_000_000,
            pinned in any::<bool>(),
        ) {
            let tags = Tags { hash: mine, md5: None };
            let (mine, other) = (EntityTag::Hash(mine), EntityTag::Hash(other));
            prop_assert!(range_allowed(None, &tags, modified, pinned));
            prop_assert!(range_allowed(Some(IfRange::Etag(Some(mine))), &tags, modified, pinned));
            prop_assert!(!range_allowed(Some(IfRange::Etag(None)), &tags, modified, pinned));
            prop_assert_eq!(range_allowed(Some(IfRange::Etag(Some(other))), &tags, modified, pinned), other == mine);
            prop_assert_eq!(range_allowed(Some(IfRange::Date(Some(modified))), &tags, modified, pinned), pinned);
            prop_assert!(!range_allowed(Some(IfRange::Date(Some(modified + 1))), &tags, modified, pinned));
            prop_assert!(!range_allowed(Some(IfRange::Date(None)), &tags, modified, pinned));
        }
    }

    fn entry(len: u32, n: u8) -> ManifestEntry {
        ManifestEntry {
            address: nuage_core::Address::from_bytes([n; 32]),
            key: nuage_core::chunk::ChunkKey::from_bytes([n; 32]),
            plain_len: len,
        }
    }

    /// A range takes the chunks that hold it, each cut to its part, and no other.
    #[test]
    fn plans_cover_exactly_the_range() {
        let manifest = || Manifest {
            size: 30,
            hash: [0; 32],
            entries: vec![entry(10, 1), entry(10, 2), entry(10, 3)],
            parts: vec![],
        };
        let parts = |start, end| -> Vec<(u8, usize, usize)> {
            plan(manifest(), start, end)
                .into_iter()
                .map(|(e, from, to)| (e.address.as_bytes()[0], from, to))
                .collect()
        };
        assert_eq!(parts(0, 30), vec![(1, 0, 10), (2, 0, 10), (3, 0, 10)]);
        assert_eq!(parts(5, 15), vec![(1, 5, 10), (2, 0, 5)]);
        assert_eq!(parts(10, 20), vec![(2, 0, 10)]);
        assert_eq!(parts(29, 30), vec![(3, 9, 10)]);
    }
}
