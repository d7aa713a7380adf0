//! S3's multipart operations over the object service's multipart uploads
//! (`nuage_service::multipart`): each turns its input into one service call and the answer
//! into S3's output.

use std::collections::BTreeSet;

use nuage_service::conditions;
use nuage_service::digests::Algorithm;
use nuage_service::multipart::{ChosenPart, StoredPart};
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use crate::errors::IntoS3;
use crate::front::{Front, attributes, content_checks, content_length, etag, tenant, text, timestamp};

/// The most parts or uploads one listing page gives (S3's 1,000).
const PAGE_MAX: i32 = 1000;

/// A part's entity tag: the MD5 of its content.
fn part_etag(p: &StoredPart) -> ETag {
    ETag::Strong(hex::encode(p.md5))
}

/// A page size as S3 reads it: 1 to 1,000 (more reads as 1,000, 0 as 1, so that a page
/// always moves a paginator on; none: 1,000).
fn page_size(asked: Option<i32>, what: &str) -> S3Result<usize> {
    match asked {
        None => Ok(PAGE_MAX as usize),
        Some(n) if n < 0 => Err(s3_error!(InvalidArgument, "{what} is not negative")),
        Some(n) => Ok(n.clamp(1, PAGE_MAX) as usize),
    }
}

impl Front {
    pub(crate) async fn create_multipart(
        &self,
        mut req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let tenant = tenant(&req)?;
        let input = std::mem::take(&mut req.input);
        let attributes = attributes(&req.headers, input.metadata);
        let upload = self
            .nuage
            .start_multipart(tenant.key.account_id, &input.bucket, &input.key, input.content_type, attributes)
            .await
            .s3()?;
        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(upload.id),
            ..Default::default()
        }))
    }

    pub(crate) async fn upload_part(
        &self,
        mut req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let tenant = tenant(&req)?;
        let input = std::mem::take(&mut req.input);
        let Some(body) = input.body else {
            return Err(s3_error!(IncompleteBody, "the request has no body"));
        };
        let checks = content_checks(&req.headers, req.trailing_headers.take())?;
        // The answer carries the checksums the request asked for, as S3's does.
        let asked: BTreeSet<Algorithm> =
            checks.compute.iter().copied().chain(checks.expect.iter().map(|(a, _)| *a)).collect();
        let part = self
            .nuage
            .upload_part(
                tenant.key.account_id,
                &input.bucket,
                &input.key,
                &input.upload_id,
                i64::from(input.part_number),
                body,
                content_length(&req.headers),
                checks,
            )
            .await
            .s3()?;
        let mut out = UploadPartOutput { e_tag: Some(part_etag(&part)), ..Default::default() };
        for (a, v) in part.checksums.iter().filter(|(a, _)| asked.contains(a)) {
            let v = Some(v.clone());
            match a {
                Algorithm::Crc32 => out.checksum_crc32 = v,
                Algorithm::Crc32c => out.checksum_crc32c = v,
                Algorithm::Crc64nvme => out.checksum_crc64nvme = v,
                Algorithm::Sha1 => out.checksum_sha1 = v,
                Algorithm::Sha256 => out.checksum_sha256 = v,
            }
        }
        Ok(S3Response::new(out))
    }

    pub(crate) async fn complete_multipart(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let tenant = tenant(&req)?;
        let input = &req.input;
        let parts = input.multipart_upload.as_ref().and_then(|m| m.parts.as_ref());
        let Some(parts) = parts.filter(|p| !p.is_empty()) else {
            return Err(s3_error!(MalformedXML, "the completion names no part"));
        };
        let chosen = parts
            .iter()
            .map(|p| {
                let number =
                    p.part_number.ok_or_else(|| s3_error!(InvalidPart, "a part has no PartNumber"))?;
                let number =
                    u32::try_from(number).map_err(|_| s3_error!(InvalidPart, "invalid part number"))?;
                Ok(ChosenPart { number, etag: p.e_tag.as_ref().map(|t| t.value().to_owned()) })
            })
            .collect::<S3Result<Vec<_>>>()?;
        let precondition = conditions::precondition(text(&req.headers));
        let (_, committed) = self
            .nuage
            .complete_multipart(
                tenant.key.account_id,
                &input.bucket,
                &input.key,
                &input.upload_id,
                &chosen,
                &precondition,
            )
            .await
            .s3()?;
        let v = committed.version;
        Ok(S3Response::new(CompleteMultipartUploadOutput {
            bucket: Some(input.bucket.clone()),
            key: Some(input.key.clone()),
            e_tag: etag(&v),
            location: Some(format!("/{}/{}", input.bucket, input.key)),
            version_id: Some(v.id.to_string()),
            ..Default::default()
        }))
    }

    pub(crate) async fn abort_multipart(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let tenant = tenant(&req)?;
        let input = &req.input;
        self.nuage
            .abort_multipart(tenant.key.account_id, &input.bucket, &input.key, &input.upload_id)
            .await
            .s3()?;
        Ok(S3Response::new(AbortMultipartUploadOutput::default()))
    }

    pub(crate) async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        let tenant = tenant(&req)?;
        let input = &req.input;
        let max = page_size(input.max_parts, "max-parts")?;
        let after = match input.part_number_marker {
            None => 0,
            Some(m) => {
                u32::try_from(m).map_err(|_| s3_error!(InvalidArgument, "invalid part-number-marker"))?
            }
        };
        // One more than asked tells whether the page is the last.
        let (_, mut parts) = self
            .nuage
            .parts(tenant.key.account_id, &input.bucket, &input.key, &input.upload_id, after, max + 1)
            .await
            .s3()?;
        let truncated = parts.len() > max;
        parts.truncate(max);
        let next = parts.last().map(|p| p.number as i32);
        let listed = parts
            .iter()
            .map(|p| Part {
                e_tag: Some(part_etag(p)),
                last_modified: Some(timestamp(p.created_at)),
                part_number: Some(p.number as i32),
                size: Some(p.size as i64),
                ..Default::default()
            })
            .collect();
        Ok(S3Response::new(ListPartsOutput {
            bucket: Some(input.bucket.clone()),
            key: Some(input.key.clone()),
            upload_id: Some(input.upload_id.clone()),
            max_parts: Some(max as i32),
            part_number_marker: input.part_number_marker,
            next_part_number_marker: if truncated { next } else { None },
            is_truncated: Some(truncated),
            parts: Some(listed),
            storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
            ..Default::default()
        }))
    }

    pub(crate) async fn list_multiparts(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        let tenant = tenant(&req)?;
        let input = &req.input;
        let max = page_size(input.max_uploads, "max-uploads")?;
        let prefix = input.prefix.clone().unwrap_or_default();
        let delimiter = input.delimiter.clone().filter(|d| !d.is_empty());
        let after = input.key_marker.as_deref().map(|k| (k, input.upload_id_marker.as_deref().unwrap_or("")));
        let mut uploads = self
            .nuage
            .multiparts(tenant.key.account_id, &input.bucket, &prefix, after, max + 1)
            .await
            .s3()?;
        let truncated = uploads.len() > max;
        uploads.truncate(max);
        let next = uploads.last().map(|u| (u.key.clone(), u.id.clone()));
        let mut prefixes: Vec<String> = Vec::new();
        let mut listed = Vec::new();
        for u in uploads {
            // Keys with the delimiter past the prefix roll up into their common prefix.
            if let Some(d) = &delimiter
                && let Some(at) = u.key[prefix.len()..].find(d.as_str())
            {
                let common = u.key[..prefix.len() + at + d.len()].to_owned();
                if prefixes.last() != Some(&common) {
                    prefixes.push(common);
                }
                continue;
            }
            listed.push(MultipartUpload {
                key: Some(u.key),
                upload_id: Some(u.id),
                initiated: Some(timestamp(u.created_at)),
                storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
                ..Default::default()
            });
        }
        Ok(S3Response::new(ListMultipartUploadsOutput {
            bucket: Some(input.bucket.clone()),
            prefix: input.prefix.clone(),
            delimiter,
            key_marker: input.key_marker.clone(),
            upload_id_marker: input.upload_id_marker.clone(),
            next_key_marker: next.as_ref().filter(|_| truncated).map(|n| n.0.clone()),
            next_upload_id_marker: next.filter(|_| truncated).map(|n| n.1),
            max_uploads: Some(max as i32),
            is_truncated: Some(truncated),
            uploads: Some(listed),
            common_prefixes: Some(prefixes.into_iter().map(|p| CommonPrefix { prefix: Some(p) }).collect()),
            ..Default::default()
        }))
    }
}

/// The bucket, key and version a copy reads (`x-amz-copy-source`), which a key limited to
/// one bucket may only name in that bucket.
pub(crate) fn copy_source(
    tenant: &crate::keys::Tenant,
    source: &CopySource,
) -> S3Result<(String, String, Option<i64>)> {
    let CopySource::Bucket { bucket, key, version_id } = source else {
        return Err(s3_error!(NotImplemented, "a copy source is bucket/key here, not an access point"));
    };
    if tenant.key.bucket.as_deref().is_some_and(|only| only != &**bucket) {
        return Err(s3_error!(AccessDenied, "this access key is limited to its bucket"));
    }
    let version = crate::front::version_id(version_id.as_deref())?;
    Ok((bucket.to_string(), key.to_string(), version))
}

/// The source's conditions of a copy: the `x-amz-copy-source-if-*` headers, read as a
/// read's `If-*` are.
pub(crate) fn source_conditions(headers: &http::HeaderMap) -> nuage_service::read::ReadConditions {
    let value = text(headers);
    conditions::read_conditions(|name| value(&format!("x-amz-copy-source-{name}")))
}

impl Front {
    pub(crate) async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        let tenant = tenant(&req)?;
        let input = &req.input;
        let (from, from_key, version) = copy_source(&tenant, &input.copy_source)?;
        let range = match req.headers.get("x-amz-copy-source-range") {
            None => None,
            Some(v) => Some(
                v.to_str().ok().and_then(|v| conditions::range(|n| (n == "range").then_some(v))).ok_or_else(
                    || s3_error!(InvalidArgument, "x-amz-copy-source-range is bytes=first-last"),
                )?,
            ),
        };
        let from_key = nuage_service::names::read_key(&from_key).s3()?;
        let (source, part) = self
            .nuage
            .upload_part_copy(
                tenant.key.account_id,
                &input.bucket,
                &input.key,
                &input.upload_id,
                i64::from(input.part_number),
                &from,
                from_key,
                version,
                source_conditions(&req.headers),
                range,
            )
            .await
            .s3()?;
        Ok(S3Response::new(UploadPartCopyOutput {
            copy_part_result: Some(CopyPartResult {
                e_tag: Some(part_etag(&part)),
                last_modified: Some(timestamp(part.created_at)),
                ..Default::default()
            }),
            copy_source_version_id: Some(source.id.to_string()),
            ..Default::default()
        }))
    }

    pub(crate) async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        let tenant = tenant(&req)?;
        let input = &req.input;
        let (from, from_key, version) = copy_source(&tenant, &input.copy_source)?;
        let replace = match input.metadata_directive.as_ref().map(|d| d.as_str().to_ascii_uppercase()) {
            None => None,
            Some(d) if d == MetadataDirective::COPY => None,
            Some(d) if d == MetadataDirective::REPLACE => {
                Some((input.content_type.clone(), attributes(&req.headers, input.metadata.clone())))
            }
            Some(d) => return Err(s3_error!(InvalidArgument, "unknown metadata directive {d}")),
        };
        let from_key = nuage_service::names::read_key(&from_key).s3()?;
        let (source, committed) = self
            .nuage
            .copy_object(
                tenant.key.account_id,
                &from,
                from_key,
                version,
                source_conditions(&req.headers),
                &input.bucket,
                &input.key,
                replace,
                &conditions::precondition(text(&req.headers)),
            )
            .await
            .s3()?;
        let v = committed.version;
        Ok(S3Response::new(CopyObjectOutput {
            copy_object_result: Some(CopyObjectResult {
                e_tag: etag(&v),
                last_modified: Some(timestamp(v.created_at)),
                ..Default::default()
            }),
            copy_source_version_id: Some(source.id.to_string()),
            version_id: Some(v.id.to_string()),
            ..Default::default()
        }))
    }
}
