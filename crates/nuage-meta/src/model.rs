//! The records of an account's namespace (buckets, versions, chunk references, listings,
//! changes) and how they are read from rows.

use std::collections::BTreeMap;

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::exec::Cols;
use crate::{ChangeKind, Error, PlacementState, Result};

/// How a bucket stores its objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketPolicy {
    /// Copies of each chunk, on distinct providers.
    pub replicas: u32,
    /// Copies that must be stored before a write succeeds.
    pub write_quorum: u32,
    /// Versions kept per key, the newest ones (tombstones count); 0 keeps them all.
    pub keep_versions: u32,
    /// For an end-to-end bucket, the id of the content key that seals its manifests
    /// (`nuage_core::e2e`); set at creation, never changed.
    pub e2e_key_id: Option<[u8; 16]>,
    /// Devices may upload chunks straight to a provider with presigned URLs; the server
    /// verifies them at commit and makes the other replicas after.
    pub direct_upload: bool,
}

/// A bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    /// Id.
    pub id: i64,
    /// Owner.
    pub account_id: i64,
    /// Name, unique per account.
    pub name: String,
    /// Placement and versioning.
    pub policy: BucketPolicy,
    /// Creation time, Unix ms.
    pub created_at: i64,
}

/// One version of a key: content, or a tombstone left by a delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    /// Id, increasing with time across the whole store.
    pub id: i64,
    /// The key.
    pub key: String,
    /// A delete marker.
    pub tombstone: bool,
    /// Plaintext size (0 for a tombstone).
    pub size: u64,
    /// Whole-file BLAKE3 (none for a tombstone).
    pub etag: Option<[u8; 32]>,
    /// The `Content-Type` given at upload.
    pub content_type: Option<String>,
    /// The MD5 entity tag S3 clients expect, when the server saw the content whole as it
    /// was written (none for a smart upload and a tombstone).
    pub md5: Option<Md5Tag>,
    /// The object service's other attributes of the version (JSON), if any.
    pub attrs: Option<String>,
    /// Creation time, Unix ms.
    pub created_at: i64,
}

impl Version {
    /// The entity tags the version answers to (none for a tombstone).
    pub fn tags(&self) -> Option<Tags> {
        self.etag.filter(|_| !self.tombstone).map(|hash| Tags { hash, md5: self.md5 })
    }
}

/// The MD5 entity tag of S3: the MD5 of the content (a single PUT), or the MD5 of the MD5s
/// of the parts of a multipart upload, with their count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Md5Tag {
    /// The digest.
    pub digest: [u8; 16],
    /// The parts of a multipart upload; none for a single PUT.
    pub parts: Option<u32>,
}

impl std::fmt::Display for Md5Tag {
    /// As S3 spells it, without quotes: 32 hexadecimal digits, then `-N` for N parts.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in self.digest {
            write!(f, "{b:02x}")?;
        }
        match self.parts {
            Some(n) => write!(f, "-{n}"),
            None => Ok(()),
        }
    }
}

impl std::str::FromStr for Md5Tag {
    type Err = ();

    /// The spelling of [`Md5Tag`]'s `Display` (lowercase: entity tags compare exactly).
    fn from_str(s: &str) -> std::result::Result<Self, ()> {
        let (hex, parts) = match s.split_once('-') {
            Some((h, n)) if !n.starts_with('+') => (h, Some(n.parse::<u32>().map_err(|_| ())?)),
            Some(_) => return Err(()),
            None => (s, None),
        };
        if hex.len() != 32 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(());
        }
        let mut digest = [0u8; 16];
        for (i, d) in digest.iter_mut().enumerate() {
            *d = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| ())?;
        }
        Ok(Md5Tag { digest, parts })
    }
}

/// One entity tag a condition names: a version's whole-file BLAKE3 (the tag of `/v1`) or its
/// MD5 tag (the tag of S3). A version answers to both, so a condition means the same
/// whichever front it came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntityTag {
    /// The whole-file BLAKE3.
    Hash([u8; 32]),
    /// The MD5 tag.
    Md5(Md5Tag),
}

impl EntityTag {
    /// A tag as the fronts spell it, unquoted: 64 lowercase hexadecimal digits (a BLAKE3),
    /// or an [`Md5Tag`]; none for a tag that names nothing here.
    pub fn parse(text: &str) -> Option<EntityTag> {
        if text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            let mut hash = [0u8; 32];
            for (i, d) in hash.iter_mut().enumerate() {
                *d = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
            }
            return Some(EntityTag::Hash(hash));
        }
        text.parse().ok().map(EntityTag::Md5)
    }
}

/// The entity tags of a version with content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tags {
    /// Its whole-file BLAKE3.
    pub hash: [u8; 32],
    /// Its MD5 tag, if the server made one.
    pub md5: Option<Md5Tag>,
}

impl Tags {
    /// Whether the version answers to `tag`.
    pub fn answers(&self, tag: &EntityTag) -> bool {
        match tag {
            EntityTag::Hash(h) => *h == self.hash,
            EntityTag::Md5(m) => Some(*m) == self.md5,
        }
    }
}

/// An entity-tag condition (`If-Match` / `If-None-Match`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EtagCondition {
    /// `*`: any current version.
    Any,
    /// One of these tags.
    OneOf(Vec<EntityTag>),
}

impl EtagCondition {
    /// Whether a current version with these tags (none: absent) matches.
    pub fn matches(&self, current: Option<&Tags>) -> bool {
        match (self, current) {
            (_, None) => false,
            (EtagCondition::Any, Some(_)) => true,
            (EtagCondition::OneOf(tags), Some(t)) => tags.iter().any(|tag| t.answers(tag)),
        }
    }
}

/// Conditions on the current live version that a write requires.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Precondition {
    /// The write happens only if the current version matches.
    pub if_match: Option<EtagCondition>,
    /// The write happens only if the current version does not match (`*`: only if absent).
    pub if_none_match: Option<EtagCondition>,
}

impl Precondition {
    /// Whether the conditions hold for a current version with these tags (none: absent).
    pub fn holds(&self, current: Option<&Tags>) -> bool {
        self.if_match.as_ref().is_none_or(|c| c.matches(current))
            && self.if_none_match.as_ref().is_none_or(|c| !c.matches(current))
    }
}

/// A chunk of a new version: where it was placed and how big it is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkRef {
    /// Address (BLAKE3 of the stored bytes).
    pub address: [u8; 32],
    /// Stored size in bytes.
    pub stored_size: u32,
    /// Providers that acknowledged it.
    pub providers: Vec<String>,
    /// What opening it told the server (none for an end-to-end chunk). The commit records
    /// the chunk as the account's (`chunk_owners`) with it.
    pub opened: Option<Opened>,
}

/// What the server learnt by opening a chunk with the key it was given: the chunk's
/// plaintext length and the BLAKE3 hash of that key. A manifest entry of the chunk must
/// say the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opened {
    /// Plaintext length.
    pub plain_len: u32,
    /// BLAKE3 of the chunk key.
    pub key_hash: [u8; 32],
}

/// A version to commit.
#[derive(Debug, Clone, Default)]
pub struct NewVersion {
    /// Plaintext size.
    pub size: u64,
    /// Whole-file BLAKE3.
    pub etag: [u8; 32],
    /// `Content-Type`.
    pub content_type: Option<String>,
    /// The MD5 tag, when the server saw the content whole.
    pub md5: Option<Md5Tag>,
    /// The object service's other attributes (JSON).
    pub attrs: Option<String>,
    /// The encoded manifest (nuMF).
    pub manifest: Vec<u8>,
    /// Every distinct chunk of the manifest, with its placements. The version is charged
    /// the sum of their stored sizes against the account's quota.
    pub chunks: Vec<ChunkRef>,
    /// The holder of the chunk leases the upload took ([`Meta::lease_chunks`](crate::Meta::lease_chunks)), or the id
    /// of the smart upload's session: the commit drops them, in its transaction.
    pub lease_holder: Option<String>,
}

/// What a write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// The version now at the head of the key.
    pub version: Version,
    /// True when an earlier request with the same idempotency key made this version, and
    /// this call changed nothing.
    pub replayed: bool,
    /// Versions removed by the bucket's `keep_versions` policy.
    pub pruned: Vec<i64>,
}

/// A chunk of the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkInfo {
    /// Stored size.
    pub stored_size: u32,
    /// Manifest entries of kept versions that point at it.
    pub refcount: i64,
    /// Copies it should have.
    pub replicas: u32,
    /// (provider, state) pairs.
    pub placements: Vec<(String, PlacementState)>,
}

/// One entry of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListEntry {
    /// A live object, with its head version.
    Object(Version),
    /// Keys grouped under a common prefix ending with the delimiter.
    Prefix(String),
}

/// A page of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    /// Entries, in key order.
    pub entries: Vec<ListEntry>,
    /// Where the next page starts (inclusive), if there is one.
    pub next: Option<String>,
}

/// One change of an account's feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Sequence number, per account, increasing.
    pub seq: i64,
    /// What changed.
    pub kind: ChangeKind,
    /// Bucket name.
    pub bucket: String,
    /// Key, for object changes.
    pub key: Option<String>,
    /// Version made, for object changes.
    pub version_id: Option<i64>,
    /// When, Unix ms.
    pub at: i64,
}

pub(crate) const BUCKET_COLUMNS: &str =
    "id, account_id, name, replicas, write_quorum, keep_versions, created_at, e2e_key_id, direct_upload";
pub(crate) const VERSION_COLUMNS: &str =
    "v.id, o.key, v.tombstone, v.size, v.etag, v.content_type, v.created_at, v.md5, v.md5_parts, v.attrs";

pub(crate) fn bucket(row: &AnyRow) -> Result<Bucket> {
    Ok(Bucket {
        id: row.try_get(0)?,
        account_id: row.try_get(1)?,
        name: row.try_get(2)?,
        policy: BucketPolicy {
            replicas: row.try_get::<i64, _>(3)? as u32,
            write_quorum: row.try_get::<i64, _>(4)? as u32,
            keep_versions: row.try_get::<i64, _>(5)? as u32,
            e2e_key_id: row
                .try_get::<Option<Vec<u8>>, _>(7)?
                .map(|k| k.try_into().map_err(|_| Error::Corrupt("e2e key id is not 16 bytes".into())))
                .transpose()?,
            direct_upload: row.try_get::<i64, _>(8)? != 0,
        },
        created_at: row.try_get(6)?,
    })
}

pub(crate) fn version(row: &impl Cols) -> Result<Version> {
    let etag: Option<Vec<u8>> = row.get(4)?;
    Ok(Version {
        id: row.get(0)?,
        key: row.get(1)?,
        tombstone: row.get::<i64>(2)? != 0,
        size: row.get::<i64>(3)? as u64,
        etag: etag
            .map(|e| e.try_into().map_err(|_| Error::Corrupt("etag is not 32 bytes".into())))
            .transpose()?,
        content_type: row.get(5)?,
        md5: md5_tag(row.get(7)?, row.get(8)?)?,
        attrs: row.get(9)?,
        created_at: row.get(6)?,
    })
}

/// An MD5 tag from its columns.
pub(crate) fn md5_tag(digest: Option<Vec<u8>>, parts: Option<i64>) -> Result<Option<Md5Tag>> {
    let Some(digest) = digest else { return Ok(None) };
    let digest = digest.try_into().map_err(|_| Error::Corrupt("md5 is not 16 bytes".into()))?;
    let parts = parts
        .map(|n| u32::try_from(n).map_err(|_| Error::Corrupt(format!("md5_parts {n} is out of range"))))
        .transpose()?;
    Ok(Some(Md5Tag { digest, parts }))
}

/// The smallest string greater than every string that starts with `prefix`, when there is
/// one: `prefix` with its last character incremented.
pub(crate) fn after_all_with_prefix(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = match last as u32 + 1 {
            0xD800 => Some('\u{E000}'),
            n => char::from_u32(n),
        };
        if let Some(c) = next {
            chars.push(c);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// Counts manifest entries per address, for plain and sealed (end-to-end) manifests alike.
pub(crate) fn references(manifest: &[u8]) -> Result<BTreeMap<[u8; 32], i64>> {
    let addresses = nuage_core::e2e::manifest_addresses(manifest)
        .map_err(|e| Error::Corrupt(format!("stored manifest: {e}")))?;
    let mut refs = BTreeMap::new();
    for a in &addresses {
        *refs.entry(*a.as_bytes()).or_insert(0) += 1;
    }
    Ok(refs)
}

/// An access key as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessKey {
    /// The access key id (what a client sends in the clear).
    pub id: String,
    /// Its account.
    pub account_id: i64,
    /// A label ("backups on the NAS").
    pub name: String,
    /// The only bucket it may reach, by name; none: every bucket of the account.
    pub bucket: Option<String>,
    /// It may only read.
    pub read_only: bool,
    /// The secret, sealed by the service.
    pub secret_sealed: Vec<u8>,
    /// Creation time, Unix ms.
    pub created_at: i64,
    /// Revocation time, Unix ms, if revoked.
    pub revoked_at: Option<i64>,
}
