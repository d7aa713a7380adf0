//! Reading through manifests (end-to-end buckets), and share links.
//!
//! An object of an end-to-end bucket is read here, never by the server: the client fetches
//! the sealed manifest with a grant per chunk (`GET /v1/buckets/{b}/manifests/{key}`),
//! unwraps the file key with the account's [`ContentKey`], opens the manifest, then fetches
//! the chunks ([`FETCHES_IN_FLIGHT`] at a time), checks each against its address, decrypts
//! it and writes the file in order. The same path serves a share link of an end-to-end
//! object, with the file key from the link's fragment instead.
//!
//! A share link of a normal bucket is streamed from `/s/{token}/content` and checked
//! against the whole-file BLAKE3 that `/s/{token}/info` gives; when the server lists edges,
//! it is read through its (plain) manifest instead, like an end-to-end one.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use futures::StreamExt;
use nuage_core::e2e::{self, ContentKey, FileKey};
use nuage_core::{Address, ContentHasher, Manifest, chunk};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use crate::api::{Client, GetResult, Progress, encode_path, with_suffix};
use crate::error::{ClientError, ClientResult, io_err};
use crate::retry::with_retries;
use nuage_proto::{CreateShare, NewShareView, ShareList, Unlock, Unlocked};
pub use nuage_proto::{LinkInfo, ManifestView, ShareView};

/// Chunk fetches in flight per download.
pub const FETCHES_IN_FLIGHT: usize = 8;

/// A new share link.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct NewShare {
    /// The link's record.
    #[serde(flatten)]
    pub share: ShareView,
    /// The whole URL to give the recipient (with `#k=` for an end-to-end object).
    pub url: String,
}

/// What to share and how.
#[derive(Debug, Clone, Default)]
pub struct ShareSpec {
    /// Version (default: the current one).
    pub version: Option<i64>,
    /// Lifetime, seconds.
    pub expires_in_secs: Option<u64>,
    /// Download limit.
    pub max_downloads: Option<u64>,
    /// Password.
    pub password: Option<String>,
    /// The account's key, for an object of an end-to-end bucket: the link then carries the
    /// version's file key in its fragment.
    pub content_key: Option<ContentKey>,
}

/// A share URL taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareUrl {
    /// Scheme, host and port of the server.
    pub base: String,
    /// The token.
    pub token: String,
    /// The file key from the fragment, for an end-to-end object.
    pub file_key: Option<FileKey>,
}

impl std::str::FromStr for ShareUrl {
    type Err = ClientError;

    fn from_str(url: &str) -> ClientResult<ShareUrl> {
        let bad = || ClientError::Protocol(format!("{url:?} is not a nuage share link (http…/s/TOKEN)"));
        let (rest, fragment) = url.split_once('#').unwrap_or((url, ""));
        let (base, token) = rest.rsplit_once("/s/").ok_or_else(bad)?;
        let token = token.trim_end_matches('/');
        if !(base.starts_with("http://") || base.starts_with("https://"))
            || token.is_empty()
            || token.contains('/')
        {
            return Err(bad());
        }
        let file_key = match fragment.split('&').find_map(|kv| kv.strip_prefix("k=")) {
            None => None,
            Some(k) => Some(FileKey::from_bytes(
                URL_SAFE_NO_PAD
                    .decode(k)
                    .ok()
                    .and_then(|v| <[u8; 32]>::try_from(v).ok())
                    .ok_or_else(|| ClientError::Key("the key in the link (#k=) is damaged".into()))?,
            )),
        };
        Ok(ShareUrl { base: base.to_owned(), token: token.to_owned(), file_key })
    }
}

impl Client {
    /// A version's stored manifest, with grants for its chunks.
    pub async fn manifest(
        &self,
        bucket: &str,
        key: &str,
        version: Option<i64>,
    ) -> ClientResult<ManifestView> {
        let q = version.map(|v| format!("?version={v}")).unwrap_or_default();
        let path = format!("/v1/buckets/{}/manifests/{}{q}", encode_path(bucket), encode_path(key));
        self.json(self.request(Method::GET, &path)).await
    }

    /// Downloads an object through its manifest, decrypting it here: the chunks come from
    /// an edge when the server lists some (else from the server), each checked against its
    /// address. An object of an end-to-end bucket needs the account's `content_key`.
    pub async fn get_through_manifest(
        &self,
        bucket: &str,
        key: &str,
        version: Option<i64>,
        content_key: Option<&ContentKey>,
        dest: &Path,
        progress: Progress,
    ) -> ClientResult<GetResult> {
        let view = self.manifest(bucket, key, version).await?;
        let raw = decode_b64(&view.manifest)?;
        let manifest = if e2e::is_sealed(&raw) {
            let content_key = content_key.ok_or_else(|| {
                ClientError::Key("this object is end-to-end encrypted: it needs the key".into())
            })?;
            let file_key =
                e2e::unwrap_file_key(content_key, &raw).map_err(|e| ClientError::Key(e.to_string()))?;
            e2e::open_manifest(&file_key, &raw).map_err(|e| ClientError::Key(e.to_string()))?
        } else {
            Manifest::decode(&raw).map_err(|e| ClientError::Protocol(format!("manifest: {e}")))?
        };
        self.write_from_chunks(&manifest, &view, dest, progress).await?;
        Ok(GetResult {
            size: manifest.size,
            resumed_from: 0,
            version: view.version,
            etag: hex::encode(manifest.hash),
        })
    }

    /// The file key of a version of an end-to-end bucket (what its share link carries).
    pub async fn file_key(
        &self,
        bucket: &str,
        key: &str,
        version: i64,
        content_key: &ContentKey,
    ) -> ClientResult<FileKey> {
        let view = self.manifest(bucket, key, Some(version)).await?;
        e2e::unwrap_file_key(content_key, &decode_b64(&view.manifest)?)
            .map_err(|e| ClientError::Key(e.to_string()))
    }

    /// Fetches, checks and decrypts the chunks of `manifest`, and writes them to `dest`
    /// ([`write_verified`]).
    async fn write_from_chunks(
        &self,
        manifest: &Manifest,
        view: &ManifestView,
        dest: &Path,
        progress: Progress,
    ) -> ClientResult<()> {
        let (grants, edges) = (&view.grants, self.ranked_edges(&view.edges).await);
        let edges = edges.as_deref();
        let chunks = futures::stream::iter(manifest.entries.iter().copied())
            .map(|entry| async move {
                let hex = entry.address.to_hex();
                let grant = grants
                    .get(&hex)
                    .ok_or_else(|| ClientError::Protocol(format!("no grant for chunk {hex}")))?;
                let stored = match edges {
                    Some(edges) => edges.fetch(&entry.address, grant).await,
                    None => None,
                };
                let stored = match stored {
                    Some(bytes) => bytes,
                    None => self.fetch_chunk(&entry.address, grant).await?,
                };
                tokio::task::spawn_blocking(move || {
                    chunk::open(&stored, &entry.key, entry.plain_len)
                        .map_err(|e| ClientError::Protocol(format!("chunk {}: {e}", entry.address)))
                })
                .await
                .map_err(|e| ClientError::Protocol(format!("decrypting thread: {e}")))?
            })
            .buffered(FETCHES_IN_FLIGHT);
        write_verified(dest, chunks, &manifest.hash, ContentHasher::of(manifest), progress).await
    }

    /// One stored chunk under a grant, checked against its address.
    async fn fetch_chunk(&self, address: &Address, grant: &str) -> ClientResult<Bytes> {
        let url = format!("{}/v1/chunks/{}", self.base(), address.to_hex());
        let bytes = with_retries(self.retry(), "fetching a chunk", || async {
            let r =
                self.raw_request(Method::GET, &url).header(nuage_proto::headers::GRANT, grant).send().await?;
            Ok(Self::check(r).await?.bytes().await?)
        })
        .await?;
        address.verify(&bytes).map_err(|e| ClientError::Protocol(format!("chunk from the server: {e}")))?;
        Ok(bytes)
    }

    /// Makes a share link of `bucket/key`.
    pub async fn create_share(&self, bucket: &str, key: &str, spec: &ShareSpec) -> ClientResult<NewShare> {
        let body = CreateShare {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            version: spec.version,
            expires_in_secs: spec.expires_in_secs,
            max_downloads: spec.max_downloads,
            password: spec.password.clone(),
        };
        let created: NewShareView = self.json(self.request(Method::POST, "/v1/shares").json(&body)).await?;
        let mut url = format!("{}{}", self.base(), created.path);
        if let Some(content_key) = &spec.content_key {
            let file_key = self.file_key(bucket, key, created.share.version, content_key).await?;
            url.push_str("#k=");
            url.push_str(&URL_SAFE_NO_PAD.encode(file_key.as_bytes()));
        }
        Ok(NewShare { share: created.share, url })
    }

    /// The account's share links, newest first.
    pub async fn shares(&self) -> ClientResult<Vec<ShareView>> {
        Ok(self.json::<ShareList>(self.request(Method::GET, "/v1/shares")).await?.shares)
    }

    /// Revokes a share link.
    pub async fn revoke_share(&self, id: i64) -> ClientResult<()> {
        Self::check(self.request(Method::DELETE, &format!("/v1/shares/{id}")).send().await?).await.map(|_| ())
    }
}

fn decode_b64(text: &str) -> ClientResult<Vec<u8>> {
    URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .map_err(|e| ClientError::Protocol(format!("manifest encoding: {e}")))
}

/// What the share link points at; nothing is counted.
pub async fn link_info(link: &ShareUrl) -> ClientResult<LinkInfo> {
    let client = Client::new(&link.base, None)?;
    client.json(client.raw_request(Method::GET, &format!("{}/s/{}/info", link.base, link.token))).await
}

/// Writes `bytes` to `dest` through `DEST.nuage-part`, hashing as it goes, and gives the
/// file its name only when the whole content has the content hash `hash` by `hasher` (a
/// mismatch removes the part and is [`ClientError::Integrity`]).
async fn write_verified<B: AsRef<[u8]>>(
    dest: &Path,
    bytes: impl futures::Stream<Item = ClientResult<B>>,
    hash: &[u8; 32],
    mut hasher: ContentHasher,
    progress: Progress,
) -> ClientResult<()> {
    let part = with_suffix(dest, ".nuage-part");
    if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
        tokio::fs::create_dir_all(dir).await.map_err(io_err(dir))?;
    }
    let file = tokio::fs::File::create(&part).await.map_err(io_err(&part))?;
    let mut file = tokio::io::BufWriter::with_capacity(1 << 20, file);
    let mut done = 0u64;
    let mut bytes = std::pin::pin!(bytes);
    while let Some(b) = bytes.next().await {
        let b = b?;
        let b = b.as_ref();
        hasher.update(b);
        file.write_all(b).await.map_err(io_err(&part))?;
        done += b.len() as u64;
        if !progress(done) {
            return Err(ClientError::Interrupted);
        }
    }
    file.flush().await.map_err(io_err(&part))?;
    file.into_inner().sync_all().await.map_err(io_err(&part))?;
    if hasher.finalize() != *hash {
        let _ = tokio::fs::remove_file(&part).await;
        return Err(ClientError::Integrity(dest.to_owned()));
    }
    tokio::fs::rename(&part, dest).await.map_err(io_err(dest))
}

/// Downloads what the share link `link` (whose [`link_info`] is `info`) points at into
/// `dest` (a file path), verifying it: against the whole-file hash for a normal bucket,
/// chunk by chunk and as a whole for an end-to-end one. No account is needed. When the
/// server lists edges, the chunks come through them, nearest first (`region`'s first), and
/// are opened here.
pub async fn download_share(
    link: &ShareUrl,
    info: &LinkInfo,
    password: Option<&str>,
    region: Option<String>,
    dest: &Path,
    progress: Progress,
) -> ClientResult<()> {
    let client = Client::new(&link.base, None)?.with_region(region);
    let at = |p: &str| format!("{}/s/{}/{p}", link.base, link.token);
    let grant = match (info.password, password) {
        (false, _) => None,
        (true, None) => {
            return Err(ClientError::Key("this link asks for a password".into()));
        }
        (true, Some(p)) => Some(
            client
                .json::<Unlocked>(
                    client.raw_request(Method::POST, &at("unlock")).json(&Unlock { password: p.to_owned() }),
                )
                .await?
                .grant,
        ),
    };
    let with_grant = |r: reqwest::RequestBuilder| match &grant {
        Some(g) => r.header(nuage_proto::headers::GRANT, g),
        None => r,
    };
    if info.e2e {
        let file_key = link
            .file_key
            .ok_or_else(|| ClientError::Key("this end-to-end link lacks its key (the #k= part)".into()))?;
        let view: ManifestView =
            client.json(with_grant(client.raw_request(Method::GET, &at("manifest")))).await?;
        let manifest = e2e::open_manifest(&file_key, &decode_b64(&view.manifest)?)
            .map_err(|e| ClientError::Key(e.to_string()))?;
        return client.write_from_chunks(&manifest, &view, dest, progress).await;
    }
    // A normal link reads through the edges when the server lists some.
    if !client.edge_list().await?.is_empty() {
        let view: ManifestView =
            client.json(with_grant(client.raw_request(Method::GET, &at("manifest")))).await?;
        let manifest = Manifest::decode(&decode_b64(&view.manifest)?)
            .map_err(|e| ClientError::Protocol(format!("manifest: {e}")))?;
        return client.write_from_chunks(&manifest, &view, dest, progress).await;
    }
    let hash: [u8; 32] = info
        .etag
        .as_deref()
        .and_then(|e| hex::decode(e).ok())
        .and_then(|h| h.try_into().ok())
        .ok_or_else(|| ClientError::Protocol("no whole-file hash in the link's info".into()))?;
    let response =
        Client::check(with_grant(client.raw_request(Method::GET, &at("content"))).send().await?).await?;
    let layout = match response.headers().get(nuage_proto::headers::PARTS).and_then(|v| v.to_str().ok()) {
        None => Vec::new(),
        Some(text) => nuage_core::manifest::layout_from_text(text)
            .ok_or_else(|| ClientError::Protocol(format!("a malformed x-nuage-parts: {text:?}")))?,
    };
    let body = response.bytes_stream().map(|b| b.map_err(ClientError::from));
    write_verified(dest, body, &hash, ContentHasher::new(layout), progress).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_urls_parse() {
        let u: ShareUrl = "http://127.0.0.1:8080/s/sh_abc".parse().unwrap();
        assert_eq!(
            (u.base.as_str(), u.token.as_str(), u.file_key),
            ("http://127.0.0.1:8080", "sh_abc", None)
        );
        let k = URL_SAFE_NO_PAD.encode([7u8; 32]);
        let u: ShareUrl = format!("https://x.example/nuage/s/sh_abc#k={k}").parse().unwrap();
        assert_eq!(u.base, "https://x.example/nuage");
        assert_eq!(u.file_key, Some(FileKey::from_bytes([7; 32])));
        for bad in ["bucket/key", "http://x/s/", "ftp://x/s/t", "http://x/s/a/b", "http://x/s/t#k=short"] {
            assert!(bad.parse::<ShareUrl>().is_err(), "{bad}");
        }
    }
}
