//! The S3 operations, each a call of the object service: S3's inputs become the service's
//! options (the conditions read from the headers by [`nuage_service::conditions`], as `/v1`
//! reads them), its answers and refusals S3's outputs and codes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderMap, HeaderValue, StatusCode};
use nuage_meta::Version;
use nuage_service::buckets::BucketSettings;
use nuage_service::conditions;
use nuage_service::digests::{Algorithm, ContentChecks};
use nuage_service::names::read_key;
use nuage_service::objects::{Attributes, WriteOptions};
use nuage_service::read::{Answer, ListOptions, Page, Read, ReadOptions};
use nuage_service::{Nuage, ServiceError};
use s3s::dto::*;
use s3s::{S3, S3Error, S3ErrorCode, S3Request, S3Response, S3Result, s3_error};

use crate::errors::IntoS3;
use crate::keys::Tenant;

/// The most keys one DeleteObjects may name (S3's limit).
const DELETE_MAX: usize = 1000;

/// The S3 API over the object service.
pub(crate) struct Front {
    pub nuage: Arc<Nuage>,
    /// The region the endpoint names itself.
    pub region: String,
    /// What GetBucketLocation says: none for S3's first region, which it spells as no
    /// constraint at all.
    pub location: Option<String>,
}

/// Who the request acts for (set by the access check, which every request passes first).
pub(crate) fn tenant<T>(req: &S3Request<T>) -> S3Result<Tenant> {
    req.extensions
        .get::<Tenant>()
        .cloned()
        .ok_or_else(|| s3_error!(AccessDenied, "the request must be signed with an access key"))
}

/// A header's value as text (a value that is not visible ASCII reads as empty).
pub(crate) fn text<'a>(headers: &'a HeaderMap) -> impl Fn(&str) -> Option<&'a str> + 'a {
    move |name| headers.get(name).map(|v| v.to_str().unwrap_or(""))
}

/// A version's ETag as S3 clients expect it: the MD5 tag of the content when the write
/// made one (a single PUT: its MD5; a multipart upload: `md5-of-part-md5s-N`), else its
/// BLAKE3 (a version the nuage client uploaded chunk by chunk). Both answer conditions.
pub(crate) fn etag(v: &Version) -> Option<ETag> {
    v.md5.map(|m| m.to_string()).or_else(|| v.etag.map(hex::encode)).map(ETag::Strong)
}

pub(crate) fn timestamp(ms: i64) -> Timestamp {
    Timestamp::from(UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64))
}

/// A version id as S3 sends it: this server's decimal ids.
pub(crate) fn version_id(id: Option<&str>) -> S3Result<Option<i64>> {
    id.map(|s| {
        s.parse::<i64>()
            .ok()
            .filter(|v| *v > 0)
            .ok_or_else(|| s3_error!(InvalidArgument, "invalid version id"))
    })
    .transpose()
}

/// The checksum headers' names (`x-amz-checksum-crc32`, ...).
fn checksum_header(a: Algorithm) -> String {
    format!("x-amz-checksum-{}", a.name().to_ascii_lowercase())
}

/// The checks S3 asks of a write's content: `Content-MD5`, `x-amz-checksum-*` values (in
/// the headers, or in the trailer `x-amz-trailer` announces) and the algorithm
/// `x-amz-sdk-checksum-algorithm` names.
pub(crate) fn content_checks(
    headers: &HeaderMap,
    trailers: Option<s3s::TrailingHeaders>,
) -> S3Result<ContentChecks> {
    let value = text(headers);
    let mut checks =
        ContentChecks { content_md5: value("content-md5").map(str::to_owned), ..ContentChecks::default() };
    for a in Algorithm::ALL {
        if let Some(v) = value(&checksum_header(a)) {
            checks.expect.push((a, v.to_owned()));
        }
    }
    if let Some(name) = value("x-amz-sdk-checksum-algorithm") {
        let a = Algorithm::named(name)
            .ok_or_else(|| s3_error!(InvalidArgument, "unknown checksum algorithm {name}"))?;
        checks.compute.push(a);
    }
    if let Some(announced) = value("x-amz-trailer") {
        let mut names = Vec::new();
        for name in announced.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let a = name
                .to_ascii_lowercase()
                .strip_prefix("x-amz-checksum-")
                .and_then(Algorithm::named)
                .ok_or_else(|| s3_error!(InvalidArgument, "unsupported trailer {name}"))?;
            checks.compute.push(a);
            names.push(a);
        }
        checks.trailer = Some(Box::new(move || {
            let Some(map) = trailers.and_then(|t| t.take()) else {
                return Err(ServiceError::invalid("invalid_digest", "the announced trailer was not sent"));
            };
            let mut out = Vec::new();
            for a in names {
                let v = map.get(checksum_header(a)).and_then(|v| v.to_str().ok()).ok_or_else(|| {
                    ServiceError::invalid(
                        "invalid_digest",
                        format!("the trailer has no {}", checksum_header(a)),
                    )
                })?;
                out.push((a, v.to_owned()));
            }
            Ok(out)
        }));
    }
    Ok(checks)
}

/// The content headers and user metadata a write keeps.
pub(crate) fn attributes(headers: &HeaderMap, metadata: Option<Metadata>) -> Attributes {
    let value = |name: &str| headers.get(name).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    Attributes {
        content_encoding: value("content-encoding").filter(|e| e != "aws-chunked"),
        content_disposition: value("content-disposition"),
        content_language: value("content-language"),
        cache_control: value("cache-control"),
        expires: value("expires"),
        metadata: metadata
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect(),
        checksums: BTreeMap::new(),
    }
}

/// The length of a write's content: `x-amz-decoded-content-length` for an `aws-chunked`
/// body, else `Content-Length`.
pub(crate) fn content_length(headers: &HeaderMap) -> Option<u64> {
    let value = text(headers);
    value("x-amz-decoded-content-length").or_else(|| value("content-length")).and_then(|v| v.parse().ok())
}

/// Sets the `checksum_*` fields of an output (PutObject, GetObject, HeadObject: the same
/// names in three types) to the checksums a version kept.
macro_rules! set_checksums {
    ($out:ident, $attrs:expr) => {
        for (a, v) in $attrs.checksums.iter() {
            let v = Some(v.clone());
            match a {
                Algorithm::Crc32 => $out.checksum_crc32 = v,
                Algorithm::Crc32c => $out.checksum_crc32c = v,
                Algorithm::Crc64nvme => $out.checksum_crc64nvme = v,
                Algorithm::Sha1 => $out.checksum_sha1 = v,
                Algorithm::Sha256 => $out.checksum_sha256 = v,
            }
        }
    };
}

/// What GetObject and HeadObject both say of a read.
struct Described {
    e_tag: Option<ETag>,
    last_modified: Timestamp,
    content_length: i64,
    content_range: Option<String>,
    content_type: Option<String>,
    attrs: Attributes,
    version_id: String,
}

fn describe(read: &Read) -> Described {
    let v = &read.version;
    let (start, end) = read.span();
    Described {
        e_tag: etag(v),
        last_modified: Timestamp::from(UNIX_EPOCH + Duration::from_secs(read.modified.max(0) as u64)),
        content_length: (end - start) as i64,
        content_range: matches!(read.answer, Answer::Partial { .. })
            .then(|| format!("bytes {start}-{}/{}", end.saturating_sub(1), v.size)),
        content_type: v.content_type.clone(),
        attrs: Attributes::of(v),
        version_id: v.id.to_string(),
    }
}

/// `304 Not Modified`, with the version's tag and date.
fn not_modified(read: &Read) -> S3Error {
    let mut e = S3Error::new(S3ErrorCode::NotModified);
    let mut headers = HeaderMap::new();
    if let Some(tag) = etag(&read.version).and_then(|t| t.to_http_header().ok()) {
        headers.insert(http::header::ETAG, tag);
    }
    if let Ok(v) = HeaderValue::from_str(&read.version.id.to_string()) {
        headers.insert("x-amz-version-id", v);
    }
    e.set_headers(headers);
    e
}

/// The read a GetObject or HeadObject asks for.
async fn read_object(
    front: &Front,
    tenant: &Tenant,
    headers: &HeaderMap,
    bucket: &str,
    key: &str,
    version: Option<&str>,
) -> S3Result<Read> {
    let options = ReadOptions {
        version: version_id(version)?,
        conditions: conditions::read_conditions(text(headers)),
        range: conditions::range(text(headers)),
    };
    let key = read_key(key).s3()?;
    let read = front.nuage.read(tenant.key.account_id, bucket, key, options).await.s3()?;
    if read.answer == Answer::NotModified {
        return Err(not_modified(&read));
    }
    Ok(read)
}

fn checksum_mode_on(mode: &Option<ChecksumMode>) -> bool {
    mode.as_ref().is_some_and(|m| m.as_str().eq_ignore_ascii_case(ChecksumMode::ENABLED))
}

/// Percent-encodes a key for `encoding-type=url` (all but unreserved characters and `/`).
pub(crate) fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Lists one page as both listings need it: `max_keys` 0 to 1,000 (more reads as 1,000).
async fn list_page(
    front: &Front,
    tenant: &Tenant,
    bucket: &str,
    mut options: ListOptions,
    max_keys: Option<i32>,
) -> S3Result<(Page, i32)> {
    let max_keys = max_keys.unwrap_or(1000);
    if max_keys < 0 {
        return Err(s3_error!(InvalidArgument, "max-keys is not negative"));
    }
    let max_keys = max_keys.min(1000);
    if max_keys == 0 {
        // Still a refusal for a bucket that is not there.
        front.nuage.bucket(tenant.caller(), bucket).await.s3()?;
        return Ok((Page::default(), 0));
    }
    options.delimiter = options.delimiter.filter(|d| !d.is_empty());
    options.limit = Some(max_keys as usize);
    Ok((front.nuage.list(tenant.key.account_id, bucket, &options).await.s3()?, max_keys))
}

/// The objects and prefixes of a page, keys encoded as asked.
fn listed(page: &Page, encode: bool) -> (Vec<Object>, Vec<CommonPrefix>) {
    let name = |s: &str| if encode { url_encode(s) } else { s.to_owned() };
    let objects = page
        .objects
        .iter()
        .map(|v| Object {
            e_tag: etag(v),
            key: Some(name(&v.key)),
            last_modified: Some(timestamp(v.created_at)),
            size: Some(v.size as i64),
            storage_class: Some(ObjectStorageClass::from_static(ObjectStorageClass::STANDARD)),
            ..Object::default()
        })
        .collect();
    let prefixes = page.prefixes.iter().map(|p| CommonPrefix { prefix: Some(name(p)) }).collect();
    (objects, prefixes)
}

pub(crate) fn encoding(e: &Option<EncodingType>) -> S3Result<bool> {
    match e {
        None => Ok(false),
        Some(e) if e.as_str().eq_ignore_ascii_case(EncodingType::URL) => Ok(true),
        Some(e) => Err(s3_error!(InvalidArgument, "unknown encoding-type {}", e.as_str())),
    }
}

#[async_trait::async_trait]
impl S3 for Front {
    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        self.create_multipart(req).await
    }

    async fn upload_part(&self, req: S3Request<UploadPartInput>) -> S3Result<S3Response<UploadPartOutput>> {
        Front::upload_part(self, req).await
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        self.complete_multipart(req).await
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        self.abort_multipart(req).await
    }

    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        Front::upload_part_copy(self, req).await
    }

    async fn copy_object(&self, req: S3Request<CopyObjectInput>) -> S3Result<S3Response<CopyObjectOutput>> {
        Front::copy_object(self, req).await
    }

    async fn list_parts(&self, req: S3Request<ListPartsInput>) -> S3Result<S3Response<ListPartsOutput>> {
        Front::list_parts(self, req).await
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        self.list_multiparts(req).await
    }

    async fn list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        let tenant = tenant(&req)?;
        let buckets = self.nuage.buckets(tenant.caller()).await.s3()?;
        let buckets = buckets
            .into_iter()
            .filter(|b| tenant.key.bucket.as_ref().is_none_or(|only| *only == b.name))
            .filter(|b| req.input.prefix.as_ref().is_none_or(|p| b.name.starts_with(p.as_str())))
            .map(|b| s3s::dto::Bucket {
                name: Some(b.name),
                creation_date: Some(timestamp(b.created_at)),
                bucket_region: Some(self.region.clone()),
            })
            .collect();
        let owner = Owner { id: Some(tenant.key.account_id.to_string()), display_name: None };
        Ok(S3Response::new(ListBucketsOutput {
            buckets: Some(buckets),
            owner: Some(owner),
            ..Default::default()
        }))
    }

    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        let tenant = tenant(&req)?;
        let name = req.input.bucket;
        self.nuage.create_bucket(tenant.caller(), &name, &BucketSettings::default()).await.s3()?;
        Ok(S3Response::new(CreateBucketOutput { location: Some(format!("/{name}")) }))
    }

    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        let tenant = tenant(&req)?;
        self.nuage.delete_bucket(tenant.caller(), &req.input.bucket).await.s3()?;
        Ok(S3Response::new(DeleteBucketOutput {}))
    }

    async fn head_bucket(&self, req: S3Request<HeadBucketInput>) -> S3Result<S3Response<HeadBucketOutput>> {
        let tenant = tenant(&req)?;
        self.nuage.bucket(tenant.caller(), &req.input.bucket).await.s3()?;
        Ok(S3Response::new(HeadBucketOutput {
            bucket_region: Some(self.region.clone()),
            ..Default::default()
        }))
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        let tenant = tenant(&req)?;
        self.nuage.bucket(tenant.caller(), &req.input.bucket).await.s3()?;
        // S3 spells its first region as no constraint at all.
        let location_constraint = self.location.clone().map(BucketLocationConstraint::from);
        Ok(S3Response::new(GetBucketLocationOutput { location_constraint }))
    }

    async fn get_bucket_versioning(
        &self,
        req: S3Request<GetBucketVersioningInput>,
    ) -> S3Result<S3Response<GetBucketVersioningOutput>> {
        self.get_versioning(req).await
    }

    async fn put_object(&self, mut req: S3Request<PutObjectInput>) -> S3Result<S3Response<PutObjectOutput>> {
        let tenant = tenant(&req)?;
        let input = std::mem::take(&mut req.input);
        let Some(body) = input.body else {
            return Err(s3_error!(IncompleteBody, "the request has no body"));
        };
        let checks = content_checks(&req.headers, req.trailing_headers.take())?;
        let options = WriteOptions {
            precondition: conditions::precondition(text(&req.headers)),
            idempotency_key: None,
            content_length: content_length(&req.headers),
            content_type: input.content_type,
            attributes: attributes(&req.headers, input.metadata),
            checks,
        };
        let (_, committed) = self
            .nuage
            .put_stream(tenant.key.account_id, &input.bucket, &input.key, body, options)
            .await
            .s3()?;
        let v = committed.version;
        let mut out = PutObjectOutput {
            e_tag: etag(&v),
            version_id: Some(v.id.to_string()),
            size: Some(v.size as i64),
            ..Default::default()
        };
        set_checksums!(out, Attributes::of(&v));
        out.checksum_type = Some(ChecksumType::from_static(ChecksumType::FULL_OBJECT));
        Ok(S3Response::new(out))
    }

    async fn get_object(&self, req: S3Request<GetObjectInput>) -> S3Result<S3Response<GetObjectOutput>> {
        let tenant = tenant(&req)?;
        let input = &req.input;
        let read =
            read_object(self, &tenant, &req.headers, &input.bucket, &input.key, input.version_id.as_deref())
                .await?;
        let d = describe(&read);
        let full = read.answer == Answer::Full;
        let partial = !full;
        // The first piece is awaited before the answer starts, so that a provider outage is
        // an S3 error rather than a cut body.
        let mut content = Box::pin(read.content());
        let first = content.next().await.transpose().s3()?;
        let body = futures::stream::iter(first.map(Ok::<Bytes, ServiceError>))
            .chain(content)
            .map(|piece| piece.map(http_body::Frame::data));
        // s3s's own wrapper of a stream asks for `Sync`; its body of an HTTP body does not.
        let body = s3s::Body::http_body_unsync(http_body_util::StreamBody::new(body));
        let mut out = GetObjectOutput {
            body: Some(StreamingBlob::from(body)),
            accept_ranges: Some("bytes".to_owned()),
            e_tag: d.e_tag,
            last_modified: Some(d.last_modified),
            content_length: Some(d.content_length),
            content_range: d.content_range,
            content_type: input.response_content_type.clone().or(d.content_type),
            content_encoding: input.response_content_encoding.clone().or(d.attrs.content_encoding.clone()),
            content_disposition: input
                .response_content_disposition
                .clone()
                .or(d.attrs.content_disposition.clone()),
            content_language: input.response_content_language.clone().or(d.attrs.content_language.clone()),
            cache_control: input.response_cache_control.clone().or(d.attrs.cache_control.clone()),
            metadata: (!d.attrs.metadata.is_empty()).then(|| d.attrs.metadata.clone().into_iter().collect()),
            version_id: Some(d.version_id),
            ..Default::default()
        };
        if full && checksum_mode_on(&input.checksum_mode) {
            set_checksums!(out, d.attrs);
            out.checksum_type = Some(ChecksumType::from_static(ChecksumType::FULL_OBJECT));
        }
        let mut answer = S3Response::new(out);
        if partial {
            answer.status = Some(StatusCode::PARTIAL_CONTENT);
        }
        set_expires(&mut answer.headers, input.response_expires.is_none().then_some(&d.attrs));
        Ok(answer)
    }

    async fn head_object(&self, req: S3Request<HeadObjectInput>) -> S3Result<S3Response<HeadObjectOutput>> {
        let tenant = tenant(&req)?;
        let input = &req.input;
        let read =
            read_object(self, &tenant, &req.headers, &input.bucket, &input.key, input.version_id.as_deref())
                .await?;
        let d = describe(&read);
        let partial = read.answer != Answer::Full;
        let mut out = HeadObjectOutput {
            accept_ranges: Some("bytes".to_owned()),
            e_tag: d.e_tag,
            last_modified: Some(d.last_modified),
            content_length: Some(d.content_length),
            content_range: d.content_range,
            content_type: input.response_content_type.clone().or(d.content_type),
            content_encoding: d.attrs.content_encoding.clone(),
            content_disposition: d.attrs.content_disposition.clone(),
            content_language: d.attrs.content_language.clone(),
            cache_control: d.attrs.cache_control.clone(),
            metadata: (!d.attrs.metadata.is_empty()).then(|| d.attrs.metadata.clone().into_iter().collect()),
            version_id: Some(d.version_id),
            ..Default::default()
        };
        if checksum_mode_on(&input.checksum_mode) {
            set_checksums!(out, d.attrs);
        }
        let mut answer = S3Response::new(out);
        if partial {
            answer.status = Some(StatusCode::PARTIAL_CONTENT);
        }
        set_expires(&mut answer.headers, Some(&d.attrs));
        Ok(answer)
    }

    async fn get_object_attributes(
        &self,
        req: S3Request<GetObjectAttributesInput>,
    ) -> S3Result<S3Response<GetObjectAttributesOutput>> {
        let tenant = tenant(&req)?;
        let input = &req.input;
        // One header, `x-amz-object-attributes: ETag,ObjectSize`, may name several.
        let wanted = |name: &str| {
            input
                .object_attributes
                .iter()
                .flat_map(|a| a.as_str().split(','))
                .any(|a| a.trim().eq_ignore_ascii_case(name))
        };
        // What a HEAD would find (no condition or range: GetObjectAttributes has none).
        let read = read_object(
            self,
            &tenant,
            &HeaderMap::new(),
            &input.bucket,
            &input.key,
            input.version_id.as_deref(),
        )
        .await?;
        let v = &read.version;
        let mut out = GetObjectAttributesOutput {
            last_modified: Some(timestamp(v.created_at)),
            version_id: Some(v.id.to_string()),
            ..Default::default()
        };
        if wanted(ObjectAttributes::ETAG) {
            out.e_tag = etag(v);
        }
        if wanted(ObjectAttributes::OBJECT_SIZE) {
            out.object_size = Some(v.size as i64);
        }
        if wanted(ObjectAttributes::STORAGE_CLASS) {
            out.storage_class = Some(StorageClass::from_static(StorageClass::STANDARD));
        }
        if wanted(ObjectAttributes::CHECKSUM) {
            let attrs = Attributes::of(v);
            if !attrs.checksums.is_empty() {
                let mut checksum = Checksum::default();
                set_checksums!(checksum, attrs);
                out.checksum = Some(checksum);
            }
        }
        if wanted(ObjectAttributes::OBJECT_PARTS)
            && let Some(parts) = v.md5.and_then(|m| m.parts)
        {
            // The count of parts; their own checksums are not kept per part once joined.
            out.object_parts = Some(GetObjectAttributesParts {
                total_parts_count: Some(parts as i32),
                ..Default::default()
            });
        }
        Ok(S3Response::new(out))
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        Front::delete_object(self, req).await
    }

    async fn put_bucket_cors(
        &self,
        req: S3Request<PutBucketCorsInput>,
    ) -> S3Result<S3Response<PutBucketCorsOutput>> {
        self.put_cors(req).await
    }

    async fn get_bucket_cors(
        &self,
        req: S3Request<GetBucketCorsInput>,
    ) -> S3Result<S3Response<GetBucketCorsOutput>> {
        self.get_cors(req).await
    }

    async fn delete_bucket_cors(
        &self,
        req: S3Request<DeleteBucketCorsInput>,
    ) -> S3Result<S3Response<DeleteBucketCorsOutput>> {
        self.delete_cors(req).await
    }

    async fn put_bucket_lifecycle_configuration(
        &self,
        req: S3Request<PutBucketLifecycleConfigurationInput>,
    ) -> S3Result<S3Response<PutBucketLifecycleConfigurationOutput>> {
        self.put_lifecycle(req).await
    }

    async fn get_bucket_lifecycle_configuration(
        &self,
        req: S3Request<GetBucketLifecycleConfigurationInput>,
    ) -> S3Result<S3Response<GetBucketLifecycleConfigurationOutput>> {
        self.get_lifecycle(req).await
    }

    async fn delete_bucket_lifecycle(
        &self,
        req: S3Request<DeleteBucketLifecycleInput>,
    ) -> S3Result<S3Response<DeleteBucketLifecycleOutput>> {
        self.delete_lifecycle(req).await
    }

    async fn list_object_versions(
        &self,
        req: S3Request<ListObjectVersionsInput>,
    ) -> S3Result<S3Response<ListObjectVersionsOutput>> {
        self.list_versions(req).await
    }

    async fn put_bucket_versioning(
        &self,
        req: S3Request<PutBucketVersioningInput>,
    ) -> S3Result<S3Response<PutBucketVersioningOutput>> {
        self.put_versioning(req).await
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let tenant = tenant(&req)?;
        let input = req.input;
        if input.delete.objects.len() > DELETE_MAX {
            return Err(s3_error!(MalformedXML, "a DeleteObjects names at most {DELETE_MAX} keys"));
        }
        // Checked before anything is deleted: a missing bucket changes nothing.
        self.nuage.bucket(tenant.caller(), &input.bucket).await.s3()?;
        let quiet = input.delete.quiet.unwrap_or(false);
        let (mut deleted, mut errors) = (Vec::new(), Vec::new());
        for object in input.delete.objects {
            let refused = |code: &str, message: String| s3s::dto::Error {
                code: Some(code.to_owned()),
                key: Some(object.key.clone()),
                message: Some(message),
                version_id: object.version_id.clone(),
            };
            let precondition = nuage_meta::Precondition {
                if_match: object
                    .e_tag
                    .as_ref()
                    .map(|t| conditions::etag_condition(&format!("\"{}\"", t.value()), true)),
                if_none_match: None,
            };
            let outcome = self
                .delete_one(&tenant, &input.bucket, &object.key, object.version_id.as_deref(), &precondition)
                .await;
            match outcome {
                Ok(done) => deleted.push(DeletedObject {
                    key: Some(object.key.clone()),
                    delete_marker: done.delete_marker.then_some(true),
                    delete_marker_version_id: if done.delete_marker { done.version_id.clone() } else { None },
                    version_id: object.version_id.clone(),
                }),
                Err(e) => errors.push(refused(e.code().as_str(), e.message().unwrap_or_default().to_owned())),
            }
        }
        if quiet {
            deleted.clear();
        }
        Ok(S3Response::new(DeleteObjectsOutput {
            deleted: Some(deleted),
            errors: Some(errors),
            ..Default::default()
        }))
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let tenant = tenant(&req)?;
        let input = req.input;
        let encode = encoding(&input.encoding_type)?;
        let options = ListOptions {
            prefix: input.prefix.clone().unwrap_or_default(),
            delimiter: input.delimiter.clone(),
            page_token: input.continuation_token.clone(),
            start_after: input.start_after.clone(),
            limit: None,
        };
        let (page, max_keys) = list_page(self, &tenant, &input.bucket, options, input.max_keys).await?;
        let (objects, prefixes) = listed(&page, encode);
        let name = |s: Option<String>| if encode { s.map(|s| url_encode(&s)) } else { s };
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(input.bucket),
            key_count: Some((objects.len() + prefixes.len()) as i32),
            contents: Some(objects),
            common_prefixes: Some(prefixes),
            is_truncated: Some(page.next_page_token.is_some()),
            next_continuation_token: page.next_page_token,
            continuation_token: input.continuation_token,
            max_keys: Some(max_keys),
            prefix: name(input.prefix),
            delimiter: name(input.delimiter),
            start_after: name(input.start_after),
            encoding_type: input.encoding_type,
            ..Default::default()
        }))
    }

    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        let tenant = tenant(&req)?;
        let input = req.input;
        let encode = encoding(&input.encoding_type)?;
        let options = ListOptions {
            prefix: input.prefix.clone().unwrap_or_default(),
            delimiter: input.delimiter.clone(),
            page_token: None,
            start_after: input.marker.clone().filter(|m| !m.is_empty()),
            limit: None,
        };
        let (page, max_keys) = list_page(self, &tenant, &input.bucket, options, input.max_keys).await?;
        // The next marker is the last key or prefix of the page (what a client would send
        // back as `marker`: the service skips a whole prefix given as `start_after`).
        let last =
            page.objects.last().map(|v| v.key.clone()).into_iter().chain(page.prefixes.last().cloned()).max();
        let truncated = page.next_page_token.is_some();
        let (objects, prefixes) = listed(&page, encode);
        let name = |s: Option<String>| if encode { s.map(|s| url_encode(&s)) } else { s };
        Ok(S3Response::new(ListObjectsOutput {
            name: Some(input.bucket),
            contents: Some(objects),
            common_prefixes: Some(prefixes),
            is_truncated: Some(truncated),
            next_marker: if truncated { name(last) } else { None },
            marker: name(input.marker),
            max_keys: Some(max_keys),
            prefix: name(input.prefix),
            delimiter: name(input.delimiter),
            encoding_type: input.encoding_type,
            ..Default::default()
        }))
    }
}

/// `Expires` as it was given to the write (a date S3 does not parse on the way back).
fn set_expires(headers: &mut HeaderMap, attrs: Option<&Attributes>) {
    if let Some(v) = attrs.and_then(|a| a.expires.as_deref()).and_then(|e| HeaderValue::from_str(e).ok()) {
        headers.insert(http::header::EXPIRES, v);
    }
}
